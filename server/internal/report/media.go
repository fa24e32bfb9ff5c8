package report

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
	"github.com/mamori/mamori/server/internal/register"
)

// mediaControl and mediaWritten are the agent's media vocabulary
// (agent/internal/controls/media): every event about a device carries its
// "serial" (and "vendor", "product", "vendor_id", "product_id" where the
// OS says them), and the event's register id when the device is in the
// media register the agent was given.
const (
	mediaControl = "media"
	mediaWritten = "media.file_written"
	mediaBlocked = "media.blocked"
)

// registered says whether a device is in 媒体管理台帳, as the agent
// matches it (agent/internal/controls/media/decide.go): the same serial in
// any case, and the USB ids where the entry has them.
func registered(entries []*register.MediaEntry, serial, vendorID, productID string) bool {
	return slices.ContainsFunc(entries, func(e *register.MediaEntry) bool {
		return sameSerial(e.Serial, serial) && idMatches(e.VendorID, vendorID) && idMatches(e.ProductID, productID)
	})
}

func sameSerial(a, b string) bool {
	a = strings.TrimSpace(a)
	return a != "" && strings.EqualFold(a, strings.TrimSpace(b))
}

func idMatches(want, got string) bool {
	return want == "" || got == "" || strings.EqualFold(strings.TrimSpace(want), strings.TrimSpace(got))
}

// mediaEntries lists 媒体管理台帳 (retired entries too: a stick retired
// after its use was registered when used).
func (s *Service) mediaEntries(ctx context.Context) ([]*register.MediaEntry, error) {
	es, err := s.cfg.Registers.List(ctx, register.KindMedia, register.Filter{})
	if err != nil {
		return nil, fmt.Errorf("report: media register: %w", err)
	}
	out := make([]*register.MediaEntry, 0, len(es))
	for _, e := range es {
		if m, ok := e.(*register.MediaEntry); ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// media lists the media used in the period that are not in 媒体管理台帳:
// the media events with a serial and no register id whose serial the
// register does not have, per PC and serial, with the approved carry-out
// that covered the use, if any.
func (s *Service) media(ctx context.Context, r *Report, base eventlog.CountQuery, byID map[string]Agent) error {
	entries, err := s.mediaEntries(ctx)
	if err != nil {
		return err
	}
	aps, err := s.cfg.Registers.List(ctx, register.KindApprovals, register.Filter{})
	if err != nil {
		return fmt.Errorf("report: approvals: %w", err)
	}
	inScope := scopeOf(base)
	by := map[[2]string]*UnregisteredMedium{}
	var order []*UnregisteredMedium
	f := eventlog.Filter{Control: mediaControl, From: base.From, To: base.To, Limit: eventlog.MaxLimit}
	for {
		page, err := s.cfg.Store.Query(ctx, f)
		if err != nil {
			return fmt.Errorf("report: media events: %w", err)
		}
		for i := range page.Events {
			e := &page.Events[i]
			str := func(k string) string { v, _ := e.Attrs[k].(string); return strings.TrimSpace(v) }
			serial := str("serial")
			if e.Pruned || !inScope(e.Agent) || serial == "" || e.RegisterID != "" || str("register_id") != "" ||
				e.Attrs["serial_generated"] == true || registered(entries, serial, str("vendor_id"), str("product_id")) {
				continue
			}
			k := [2]string{e.Agent, strings.ToUpper(serial)}
			m := by[k]
			if m == nil {
				m = &UnregisteredMedium{Agent: e.Agent, Host: cmp.Or(byID[e.Agent].Hostname, e.Agent), Serial: serial, First: e.Time, Last: e.Time}
				by[k] = m
				order = append(order, m)
			}
			m.Events++
			m.Vendor, m.Product = cmp.Or(m.Vendor, str("vendor")), cmp.Or(m.Product, str("product"))
			if e.Time.Before(m.First) {
				m.First = e.Time
			}
			if e.Time.After(m.Last) {
				m.Last = e.Time
			}
			switch e.Type {
			case mediaWritten:
				m.FilesWritten++
			case mediaBlocked:
				m.Blocked = true
			}
			if id := str("approval_id"); id != "" && m.Approval == "" {
				m.Approval = id
			}
		}
		if page.Next == "" || len(page.Events) == 0 {
			break
		}
		f.Cursor = page.Next
	}
	for _, m := range order {
		if m.Approval != "" {
			continue
		}
		for _, e := range aps {
			a, ok := e.(*register.Approval)
			if ok && (a.Status == register.StatusApproved || a.Status == register.StatusReturned) && sameSerial(a.Serial, m.Serial) &&
				strings.EqualFold(a.Host, m.Host) && !m.First.Before(a.From) && m.Last.Before(a.To) {
				m.Approval = a.ID
				break
			}
		}
	}
	slices.SortFunc(order, func(a, b *UnregisteredMedium) int {
		return cmp.Or(a.First.Compare(b.First), cmp.Compare(a.Host, b.Host), cmp.Compare(a.Serial, b.Serial))
	})
	r.UnregisteredMedia = make([]UnregisteredMedium, len(order))
	for i, m := range order {
		r.UnregisteredMedia[i] = *m
	}
	return nil
}

// Device is the medium's maker and product as known, else "-".
func (m UnregisteredMedium) Device() string {
	return cmp.Or(strings.TrimSpace(m.Vendor+" "+m.Product), "-")
}

// Covered says in Japanese whether an approved carry-out covered the use.
func (m UnregisteredMedium) Covered() string {
	if m.Approval != "" {
		return "承認済みの持出し " + m.Approval
	}
	return "承認なし"
}

// jstTime is t in Japan time to the minute.
func jstTime(t time.Time) string { return t.In(JST).Format("2006-01-02 15:04") }
