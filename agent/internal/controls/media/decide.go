package media

import (
	"strings"
	"time"

	"github.com/mamori/mamori/shared/policy"
)

// Decision reasons: stable keys for dashboards and the event attr "reason".
const (
	ReasonRegistered  = "registered"   // serial is in the media register (allow_registered)
	ReasonAllowSerial = "allow_serial" // serial is in allow_serials
	ReasonApproval    = "approval"     // an approved carry-out window is open
	ReasonDefault     = "default"      // nothing matched: the policy default
	ReasonNoSerial    = "no_serial"    // the device has no usable serial: only the default can apply
)

// Decision is what the policy says about one device now.
type Decision struct {
	Action     string // policy.MediaAllow | policy.MediaReadOnly | policy.MediaBlock
	Reason     string
	RegisterID string // set when the device is in the media register
	ApprovalID string // set when an approval window is open for it
}

// decide applies the media policy to dev at now. The order is: a registered
// serial (when allow_registered), an allow_serials entry, an open approval
// window [From, To), then the default. Serials Windows generated identify
// nothing and never match. A registered device is always named by its
// register id, even when the default decides, so the log links it.
func decide(dev Device, p policy.Media, now time.Time) Decision {
	def := p.Default
	if def == "" {
		def = policy.MediaAllow
	}
	serial := strings.TrimSpace(dev.Serial)
	if serial == "" || dev.SerialGenerated {
		return Decision{Action: def, Reason: ReasonNoSerial}
	}
	var d Decision
	for _, r := range p.Registered {
		if !sameSerial(r.Serial, serial) || !idMatches(r.VendorID, dev.VendorID) || !idMatches(r.ProductID, dev.ProductID) {
			continue
		}
		d.RegisterID = r.RegisterID
		if p.AllowRegistered {
			d.Action, d.Reason = policy.MediaAllow, ReasonRegistered
			return d
		}
		break
	}
	for _, s := range p.AllowSerials {
		if sameSerial(s, serial) {
			d.Action, d.Reason = policy.MediaAllow, ReasonAllowSerial
			return d
		}
	}
	for _, a := range p.Approvals {
		if sameSerial(a.Serial, serial) && !now.Before(a.From) && now.Before(a.To) {
			d.Action, d.Reason, d.ApprovalID = policy.MediaAllow, ReasonApproval, a.ID
			return d
		}
	}
	d.Action, d.Reason = def, ReasonDefault
	return d
}

// sameSerial compares serials as admins type them: case and surrounding
// blanks do not matter (Windows upper-cases, udev keeps the device's case).
func sameSerial(a, b string) bool {
	a = strings.TrimSpace(a)
	return a != "" && strings.EqualFold(a, strings.TrimSpace(b))
}

// idMatches: an empty register field matches any device; else hex ids
// compare case-insensitively ("0781" == "0781", "abcd" == "ABCD").
func idMatches(want, got string) bool {
	return want == "" || strings.EqualFold(strings.TrimSpace(want), strings.TrimSpace(got))
}
