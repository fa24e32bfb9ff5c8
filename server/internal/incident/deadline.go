package incident

import "time"

// JST is Japan Standard Time (no daylight saving time, so a fixed zone).
var JST = time.FixedZone("JST", 9*60*60)

// Report periods (個人情報保護法施行規則 第8条, PPC 通則編 3-5-3-3/3-5-3-4).
const (
	PreliminaryMinDays = 3  // 速報: 「速やかに」, about 3 to 5 days after knowing
	PreliminaryMaxDays = 5  //
	FinalDays          = 30 // 確報: within 30 days of knowing
	FinalDaysIntent    = 60 // 確報 where the leak was by unauthorised intent (規則第7条第3号)
)

// Deadlines are the report dates of one incident, as Japan dates.
//
// Days are counted from the day the office knew (発覚日) as the Civil Code
// counts periods that start mid-day (民法第140条, the first day is not
// counted): the 30-day 確報 falls on 発覚日 + 30. Weekends and public
// holidays count and do not move a deadline. 速報 has no fixed date in the
// rules; PPC's guideline reads "about 3 to 5 days", so both bounds are
// shown.
type Deadlines struct {
	PreliminaryFrom string `json:"preliminary_from"` // 速報の目安 (3日目)
	PreliminaryBy   string `json:"preliminary_by"`   // 速報の目安 (5日目)
	FinalBy         string `json:"final_by"`         // 確報の期限
	FinalDays       int    `json:"final_days"`       // 30 or 60
	// Overdue flags, as of the time Compute was given.
	PreliminaryOverdue bool `json:"preliminary_overdue"`
	FinalOverdue       bool `json:"final_overdue"`
}

// Compute returns the deadlines of an incident discovered at discovered;
// intent selects the 60-day 確報. now, preliminaryDone and finalDone set
// the overdue flags: a report is overdue once the day after its last day
// has begun in Japan and it was not made.
func Compute(discovered time.Time, intent bool, now time.Time, preliminaryDone, finalDone bool) Deadlines {
	y, m, d := discovered.In(JST).Date()
	day := func(n int) time.Time { return time.Date(y, m, d+n, 0, 0, 0, 0, JST) }
	days := FinalDays
	if intent {
		days = FinalDaysIntent
	}
	dl := Deadlines{
		PreliminaryFrom: day(PreliminaryMinDays).Format(time.DateOnly),
		PreliminaryBy:   day(PreliminaryMaxDays).Format(time.DateOnly),
		FinalBy:         day(days).Format(time.DateOnly),
		FinalDays:       days,
	}
	if !now.IsZero() {
		dl.PreliminaryOverdue = !preliminaryDone && !now.Before(day(PreliminaryMaxDays+1))
		dl.FinalOverdue = !finalDone && !now.Before(day(days+1))
	}
	return dl
}
