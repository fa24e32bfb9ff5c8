package main

import "testing"

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1 << 20, maxGCPercent}, // idle: capped, not 12,800
		{64 << 20, 200},         // 128 MiB of room
		{70 << 20, 182},         // ingest at 50,000 events/s
		{128 << 20, 100},        // GOGC's default from here on
		{300 << 20, 100},        // 10,000 held long-polls
		{1 << 40, 100},
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}
