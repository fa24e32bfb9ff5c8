package incident

import (
	"testing"
	"time"
)

func TestDeadlines(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name            string
		discovered      string
		intent          bool
		from, by, final string
		days            int
	}{
		{"ordinary", "2026-12-03T10:00:00+09:00", false, "2026-12-06", "2026-12-08", "2027-01-02", 30},
		{"across a month end", "2026-01-29T15:00:00+09:00", false, "2026-02-01", "2026-02-03", "2026-02-28", 30},
		{"across the year end", "2026-12-30T18:00:00+09:00", false, "2027-01-02", "2027-01-04", "2027-01-29", 30},
		{"unauthorised intent: 60 days", "2026-12-30T18:00:00+09:00", true, "2027-01-02", "2027-01-04", "2027-02-28", 60},
		{"60 days across February", "2027-01-31T09:00:00+09:00", true, "2027-02-03", "2027-02-05", "2027-04-01", 60},
		// 23:30 UTC on Jan 31 is Feb 1 in Japan: dates are Japan dates.
		{"UTC evening is the next Japan day", "2026-01-31T23:30:00Z", false, "2026-02-04", "2026-02-06", "2026-03-03", 30},
	} {
		d := Compute(at(tc.discovered), tc.intent, time.Time{}, false, false)
		if d.PreliminaryFrom != tc.from || d.PreliminaryBy != tc.by || d.FinalBy != tc.final || d.FinalDays != tc.days {
			t.Errorf("%s: got %+v", tc.name, d)
		}
	}
	disc := at("2026-12-03T10:00:00+09:00")
	if d := Compute(disc, false, at("2026-12-08T23:59:00+09:00"), false, false); d.PreliminaryOverdue {
		t.Error("overdue on its last day")
	}
	if d := Compute(disc, false, at("2026-12-09T00:00:00+09:00"), false, false); !d.PreliminaryOverdue || d.FinalOverdue {
		t.Errorf("day after: %+v", d)
	}
	if d := Compute(disc, false, at("2026-12-09T00:00:00+09:00"), true, false); d.PreliminaryOverdue {
		t.Error("made report still overdue")
	}
	if d := Compute(disc, false, at("2027-01-03T00:00:00+09:00"), true, false); !d.FinalOverdue {
		t.Error("確報 not overdue on day 31")
	}
}
