package media

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/policy"
)

// BenchmarkDecide: a policy as large as a big office's register.
func BenchmarkDecide(b *testing.B) {
	var pol policy.Media
	pol.Default, pol.AllowRegistered = policy.MediaBlock, true
	for i := 0; i < 1000; i++ {
		pol.Registered = append(pol.Registered, policy.RegisteredMed{RegisterID: fmt.Sprint("MED-", i), Serial: fmt.Sprintf("SER%06d", i)})
		pol.Approvals = append(pol.Approvals, policy.Approval{ID: fmt.Sprint("AP-", i), Serial: fmt.Sprintf("APP%06d", i), From: t0, To: t0.Add(time.Hour)})
	}
	dev := stick // matches nothing: the longest path
	b.ReportAllocs()
	for b.Loop() {
		if d := decide(dev, pol, t0); d.Action != policy.MediaBlock {
			b.Fatal(d)
		}
	}
}

// BenchmarkSysfsList: one poll of a fixture tree (what runs every 1.5 s).
func BenchmarkSysfsList(b *testing.B) {
	root := loadTree(b, "usb-sandisk-vfat.txt")
	p := newSysfsProbe(root)
	b.ReportAllocs()
	for b.Loop() {
		if d, err := p.list(context.Background()); err != nil || len(d) != 1 {
			b.Fatal(d, err)
		}
	}
}
