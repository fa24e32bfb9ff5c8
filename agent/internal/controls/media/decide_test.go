package media

import (
	"fmt"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/policy"
)

var (
	t0     = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	serial = "4C530001230512345678"
	stick  = Device{Key: "sdb", VendorID: "0781", ProductID: "5567", Serial: serial}
)

func TestDecideTable(t *testing.T) {
	win := policy.Approval{ID: "AP-7", Serial: serial, From: t0, To: t0.Add(4 * time.Hour)}
	reg := policy.RegisteredMed{RegisterID: "MED-0012", Serial: serial, VendorID: "0781", ProductID: "5567"}
	tests := []struct {
		name string
		dev  Device
		pol  policy.Media
		now  time.Time
		want Decision
	}{
		{"empty default is allow", stick, policy.Media{}, t0, Decision{Action: "allow", Reason: ReasonDefault}},
		{"default block", stick, policy.Media{Default: "block"}, t0, Decision{Action: "block", Reason: ReasonDefault}},
		{"default read_only", stick, policy.Media{Default: "read_only"}, t0, Decision{Action: "read_only", Reason: ReasonDefault}},
		{"registered and allowed", stick, policy.Media{Default: "block", AllowRegistered: true, Registered: []policy.RegisteredMed{reg}}, t0,
			Decision{Action: "allow", Reason: ReasonRegistered, RegisterID: "MED-0012"}},
		{"registered but allow_registered off keeps the register id", stick, policy.Media{Default: "block", Registered: []policy.RegisteredMed{reg}}, t0,
			Decision{Action: "block", Reason: ReasonDefault, RegisterID: "MED-0012"}},
		{"register entry for another product", stick, policy.Media{Default: "block", AllowRegistered: true,
			Registered: []policy.RegisteredMed{{RegisterID: "MED-1", Serial: serial, VendorID: "0781", ProductID: "5581"}}}, t0,
			Decision{Action: "block", Reason: ReasonDefault}},
		{"register entry without ids matches on serial", stick, policy.Media{Default: "block", AllowRegistered: true,
			Registered: []policy.RegisteredMed{{RegisterID: "MED-2", Serial: serial}}}, t0,
			Decision{Action: "allow", Reason: ReasonRegistered, RegisterID: "MED-2"}},
		{"serial case and blanks do not matter", stick, policy.Media{Default: "block", AllowSerials: []string{" 4c530001230512345678 "}}, t0,
			Decision{Action: "allow", Reason: ReasonAllowSerial}},
		{"approval window open", stick, policy.Media{Default: "block", Approvals: []policy.Approval{win}}, t0.Add(time.Hour),
			Decision{Action: "allow", Reason: ReasonApproval, ApprovalID: "AP-7"}},
		{"approval for another serial", stick, policy.Media{Default: "block", Approvals: []policy.Approval{{ID: "AP-8", Serial: "OTHER", From: t0, To: t0.Add(time.Hour)}}}, t0,
			Decision{Action: "block", Reason: ReasonDefault}},
		{"registered, not allowed, approved: approval links both", stick, policy.Media{Default: "block", Registered: []policy.RegisteredMed{reg}, Approvals: []policy.Approval{win}}, t0,
			Decision{Action: "allow", Reason: ReasonApproval, RegisterID: "MED-0012", ApprovalID: "AP-7"}},
		{"generated serial never matches", Device{Serial: "7&2A8B6F3C&0", SerialGenerated: true},
			policy.Media{Default: "block", AllowSerials: []string{"7&2A8B6F3C&0"}, Approvals: []policy.Approval{{ID: "A", Serial: "7&2A8B6F3C&0", From: t0, To: t0.Add(time.Hour)}}}, t0,
			Decision{Action: "block", Reason: ReasonNoSerial}},
		{"no serial follows the default", Device{}, policy.Media{Default: "read_only", AllowSerials: []string{"x"}}, t0,
			Decision{Action: "read_only", Reason: ReasonNoSerial}},
		{"first of two approvals wins", stick, policy.Media{Default: "block", Approvals: []policy.Approval{
			{ID: "A1", Serial: serial, From: t0.Add(-time.Hour), To: t0.Add(time.Hour)},
			{ID: "A2", Serial: serial, From: t0.Add(-time.Minute), To: t0.Add(time.Minute)}}}, t0,
			Decision{Action: "allow", Reason: ReasonApproval, ApprovalID: "A1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(tt.dev, tt.pol, tt.now); got != tt.want {
				t.Fatalf("decide = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestDecideApprovalEdges: the window is [From, To).
func TestDecideApprovalEdges(t *testing.T) {
	from, to := t0, t0.Add(2*time.Hour)
	pol := policy.Media{Default: "block", Approvals: []policy.Approval{{ID: "AP-1", Serial: serial, From: from, To: to}}}
	for _, tc := range []struct {
		name string
		now  time.Time
		open bool
	}{
		{"From-1ns", from.Add(-time.Nanosecond), false},
		{"From", from, true},
		{"From+1ns", from.Add(time.Nanosecond), true},
		{"To-1ns", to.Add(-time.Nanosecond), true},
		{"To", to, false},
		{"To+1ns", to.Add(time.Nanosecond), false},
		{"From in another zone", from.In(time.FixedZone("JST", 9*3600)), true},
		{"To in another zone", to.In(time.FixedZone("JST", 9*3600)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(stick, pol, tc.now)
			want := Decision{Action: "block", Reason: ReasonDefault}
			if tc.open {
				want = Decision{Action: "allow", Reason: ReasonApproval, ApprovalID: "AP-1"}
			}
			if got != want {
				t.Fatalf("at %v: %+v, want %+v", tc.now, got, want)
			}
		})
	}
}

// TestDecideCombinations runs every combination of the inputs that matter
// against the rules written out one by one.
func TestDecideCombinations(t *testing.T) {
	defaults := []string{"", "allow", "read_only", "block"}
	type serialCase struct {
		name      string
		s         string
		generated bool
	}
	serials := []serialCase{{"real", serial, false}, {"lower", "4c530001230512345678", false}, {"empty", "", false}, {"generated", "7&2A8B6F3C&0", true}}
	type regCase struct {
		name    string
		entries []policy.RegisteredMed
		match   bool
	}
	regs := []regCase{
		{"none", nil, false},
		{"match", []policy.RegisteredMed{{RegisterID: "R1", Serial: serial, VendorID: "0781", ProductID: "5567"}}, true},
		{"match-no-ids", []policy.RegisteredMed{{RegisterID: "R1", Serial: serial}}, true},
		{"vid-mismatch", []policy.RegisteredMed{{RegisterID: "R1", Serial: serial, VendorID: "0951"}}, false},
		{"other", []policy.RegisteredMed{{RegisterID: "R1", Serial: "OTHER"}}, false},
	}
	allows := []struct {
		name  string
		list  []string
		match bool
	}{{"none", nil, false}, {"match", []string{"X", serial}, true}, {"other", []string{"X"}, false}}
	from, to := t0, t0.Add(time.Hour)
	approvals := []struct {
		name  string
		list  []policy.Approval
		match bool // serial matches (window decided by now)
	}{
		{"none", nil, false},
		{"match", []policy.Approval{{ID: "A1", Serial: serial, From: from, To: to}}, true},
		{"other", []policy.Approval{{ID: "A1", Serial: "OTHER", From: from, To: to}}, false},
	}
	nows := []time.Time{from.Add(-time.Nanosecond), from, to.Add(-time.Nanosecond), to}
	n := 0
	for _, def := range defaults {
		for _, sc := range serials {
			for _, allowReg := range []bool{false, true} {
				for _, rc := range regs {
					for _, ac := range allows {
						for _, ap := range approvals {
							for _, now := range nows {
								n++
								dev := Device{VendorID: "0781", ProductID: "5567", Serial: sc.s, SerialGenerated: sc.generated}
								pol := policy.Media{Default: def, AllowRegistered: allowReg, Registered: rc.entries, AllowSerials: ac.list, Approvals: ap.list}
								got := decide(dev, pol, now)

								effDefault := def
								if effDefault == "" {
									effDefault = "allow"
								}
								usable := sc.s != "" && !sc.generated
								inWindow := !now.Before(from) && now.Before(to)
								var want Decision
								switch {
								case !usable:
									want = Decision{Action: effDefault, Reason: ReasonNoSerial}
								case rc.match && allowReg:
									want = Decision{Action: "allow", Reason: ReasonRegistered, RegisterID: "R1"}
								case ac.match:
									want = Decision{Action: "allow", Reason: ReasonAllowSerial}
								case ap.match && inWindow:
									want = Decision{Action: "allow", Reason: ReasonApproval, ApprovalID: "A1"}
								default:
									want = Decision{Action: effDefault, Reason: ReasonDefault}
								}
								if usable && rc.match {
									want.RegisterID = "R1"
								}
								if got != want {
									t.Errorf("default=%q serial=%s allowReg=%v reg=%s allow=%s approval=%s now=%s: %+v, want %+v",
										def, sc.name, allowReg, rc.name, ac.name, ap.name, now.Sub(from), got, want)
								}
							}
						}
					}
				}
			}
		}
	}
	if n != 4*4*2*5*3*3*4 {
		t.Fatalf("ran %d combinations", n)
	}
	t.Logf("%d combinations", n)
}

func ExampleDecision() {
	pol := policy.Media{Default: "block", Approvals: []policy.Approval{{ID: "AP-7", Serial: serial, From: t0, To: t0.Add(time.Hour)}}}
	fmt.Println(decide(stick, pol, t0.Add(30*time.Minute)))
	fmt.Println(decide(stick, pol, t0.Add(time.Hour)))
	// Output:
	// {allow approval  AP-7}
	// {block default  }
}
