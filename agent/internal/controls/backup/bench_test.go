package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFullBackup copies and verifies 64 files of 256 KiB per run.
func BenchmarkFullBackup(b *testing.B) {
	src, dst := b.TempDir(), b.TempDir()
	buf := make([]byte, 256<<10)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for i := 0; i < 64; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d.bin", i)), buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(64 * int64(len(buf)))
	now := time.Now()
	for i := 0; i < b.N; i++ {
		// A fresh host dir each time: every run is a full copy, not links.
		eng := &engine{hostDir: filepath.Join(dst, fmt.Sprint(i)), host: "bench", now: func() time.Time { return now }}
		if _, err := eng.run(context.Background(), []Source{{Path: src}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIncrementalBackup re-runs over 1000 unchanged small files: the
// cost of the hard-link path.
func BenchmarkIncrementalBackup(b *testing.B) {
	src, dst := b.TempDir(), b.TempDir()
	for i := 0; i < 1000; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%04d.txt", i)), []byte("data"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now()
	eng := &engine{hostDir: dst, host: "bench", now: func() time.Time { now = now.Add(time.Second); return now }}
	if _, err := eng.run(context.Background(), []Source{{Path: src}}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := eng.run(context.Background(), []Source{{Path: src}})
		if err != nil || res.Linked != 1000 {
			b.Fatal(res, err)
		}
		if _, err := eng.prune(2, nil); err != nil {
			b.Fatal(err)
		}
	}
}
