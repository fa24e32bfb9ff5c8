package notify

import (
	"slices"
	"time"
)

// JST is Japan Standard Time. Japan keeps no daylight saving time, so a
// fixed zone is exact and needs no tz database (Windows servers lack one).
var JST = time.FixedZone("JST", 9*60*60)

// Holiday returns the name of the Japanese public holiday (国民の祝日,
// 振替休日 or 国民の休日) on the date of t in Japan, or "". It follows the
// 祝日法 as amended through 2018 (2020 onward, including the moved 2020 and
// 2021 Olympic holidays); the equinox days use the Japan Coast Guard's
// approximation, valid 1980-2099.
func Holiday(t time.Time) string {
	t = t.In(JST)
	y, m, d := t.Date()
	return holidaysOf(y)[date{m, d}]
}

type date struct {
	m time.Month
	d int
}

// holidaysOf computes one year's holidays.
func holidaysOf(y int) map[date]string {
	h := map[date]string{}
	add := func(m time.Month, d int, name string) { h[date{m, d}] = name }
	nthMonday := func(m time.Month, n int) int {
		first := time.Date(y, m, 1, 0, 0, 0, 0, JST).Weekday()
		off := (int(time.Monday) - int(first) + 7) % 7
		return 1 + off + 7*(n-1)
	}
	add(time.January, 1, "元日")
	add(time.January, nthMonday(time.January, 2), "成人の日")
	add(time.February, 11, "建国記念の日")
	if y >= 2020 {
		add(time.February, 23, "天皇誕生日")
	}
	add(time.March, int(20.8431+0.242194*float64(y-1980))-(y-1980)/4, "春分の日")
	add(time.April, 29, "昭和の日")
	add(time.May, 3, "憲法記念日")
	add(time.May, 4, "みどりの日")
	add(time.May, 5, "こどもの日")
	switch y {
	case 2020:
		add(time.July, 23, "海の日")
		add(time.July, 24, "スポーツの日")
		add(time.August, 10, "山の日")
	case 2021:
		add(time.July, 22, "海の日")
		add(time.July, 23, "スポーツの日")
		add(time.August, 8, "山の日")
	default:
		add(time.July, nthMonday(time.July, 3), "海の日")
		add(time.August, 11, "山の日")
		add(time.October, nthMonday(time.October, 2), "スポーツの日")
	}
	add(time.September, nthMonday(time.September, 3), "敬老の日")
	add(time.September, int(23.2488+0.242194*float64(y-1980))-(y-1980)/4, "秋分の日")
	add(time.November, 3, "文化の日")
	add(time.November, 23, "勤労感謝の日")

	days := make([]time.Time, 0, len(h))
	for k := range h {
		days = append(days, time.Date(y, k.m, k.d, 0, 0, 0, 0, JST))
	}
	slices.SortFunc(days, func(a, b time.Time) int { return a.Compare(b) })
	is := func(t time.Time) bool { _, ok := h[date{t.Month(), t.Day()}]; return ok && t.Year() == y }
	// 国民の休日: a weekday between two holidays.
	for _, t := range days {
		mid, next := t.AddDate(0, 0, 1), t.AddDate(0, 0, 2)
		if is(next) && !is(mid) && mid.Weekday() != time.Sunday {
			add(mid.Month(), mid.Day(), "国民の休日")
		}
	}
	// 振替休日: a holiday on a Sunday moves to the next non-holiday.
	for _, t := range days {
		if t.Weekday() != time.Sunday {
			continue
		}
		sub := t.AddDate(0, 0, 1)
		for is(sub) {
			sub = sub.AddDate(0, 0, 1)
		}
		if sub.Year() == y {
			add(sub.Month(), sub.Day(), "振替休日")
		}
	}
	return h
}

// OutOfHours says whether t falls outside h in Japan time: a day not in
// h.Days, a public holiday (unless h.WorkOnHolidays), or before Start or
// from End on.
func OutOfHours(h Hours, t time.Time) bool {
	t = t.In(JST)
	if !slices.Contains(h.Days, int(t.Weekday())) {
		return true
	}
	if !h.WorkOnHolidays && Holiday(t) != "" {
		return true
	}
	if day := t.Format(time.DateOnly); slices.Contains(h.DaysOff, day) || slices.Contains(h.DaysOff, day[5:]) {
		return true
	}
	start, err1 := clock(h.Start)
	end, err2 := clock(h.End)
	if err1 != nil || err2 != nil {
		return false // validated settings never get here
	}
	m := t.Hour()*60 + t.Minute()
	return m < start || m >= end
}
