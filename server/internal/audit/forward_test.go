package audit

import (
	"context"
	"errors"
	"testing"
)

// etcd's copy of the checkpoint only moves forward by a consistent
// extension: a server on a smaller (rolled back) or forked store cannot
// replace it, and a server whose store grew from it can.
func TestCheckpointAdvancesOnlyForward(t *testing.T) {
	ctx := context.Background()
	var held []byte // the outside copy
	advance := func(extendsErr *error) func(context.Context, []byte, func([]byte) error) error {
		return func(_ context.Context, b []byte, extends func([]byte) error) error {
			if err := extends(held); err != nil {
				*extendsErr = err
				return err
			}
			held = b
			return nil
		}
	}
	a := newRig(t)
	var errA error
	a.cp.Advance, a.cp.Verifier = advance(&errA), a.verif
	a.fill(t, 2, 10)
	if _, err := a.cp.SignNow(ctx); err != nil || held == nil {
		t.Fatalf("first checkpoint not mirrored: %v", err)
	}
	a.fill(t, 2, 5)
	if cp, err := a.cp.SignNow(ctx); err != nil || string(held) != cp.Note || errA != nil {
		t.Fatalf("grown log not mirrored: %v %v", err, errA)
	}
	want := string(held)

	for name, fill := range map[string][2]int{"behind": {2, 10}, "forked": {3, 10}} {
		t.Run(name, func(t *testing.T) {
			// Another store under the same key: smaller, or as large with
			// other events.
			b := newRig(t)
			b.skey, b.vkey, b.verif = a.skey, a.vkey, a.verif
			b.log.Close()
			b.open(t)
			var errB error
			b.cp.Advance, b.cp.Verifier = advance(&errB), a.verif
			b.fill(t, fill[0], fill[1])
			if _, err := b.cp.SignNow(ctx); err != nil {
				t.Fatal(err)
			}
			if string(held) != want || !errors.Is(errB, ErrNotExtension) {
				t.Fatalf("outside copy replaced (%v)", errB)
			}
			t.Log(errB)
		})
	}
}
