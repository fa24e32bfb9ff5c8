package state

import (
	"context"
	"testing"
	"time"
)

// BenchmarkLookupAPIToken is the cost every admin API request pays.
func BenchmarkLookupAPIToken(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	plain, _, err := s.CreateAPIToken(ctx, "bench", RoleAdmin)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.LookupAPIToken(ctx, plain); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConsumeEnrollToken measures enrollments against one shared token
// (a fleet rollout), with contention on the compare-and-swap.
func BenchmarkConsumeEnrollToken(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	plain, _, err := s.CreateEnrollToken(ctx, time.Hour, b.N+1, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.ConsumeEnrollToken(ctx, plain); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
