package notify

import (
	"testing"
	"time"
)

// The 2026 and 2027 calendars as the Cabinet Office publishes them.
func TestHolidayKnownYears(t *testing.T) {
	want := map[string]string{
		"2026-01-01": "元日", "2026-01-12": "成人の日", "2026-02-11": "建国記念の日", "2026-02-23": "天皇誕生日",
		"2026-03-20": "春分の日", "2026-04-29": "昭和の日", "2026-05-03": "憲法記念日", "2026-05-04": "みどりの日",
		"2026-05-05": "こどもの日", "2026-05-06": "振替休日", "2026-07-20": "海の日", "2026-08-11": "山の日",
		"2026-09-21": "敬老の日", "2026-09-22": "国民の休日", "2026-09-23": "秋分の日", "2026-10-12": "スポーツの日",
		"2026-11-03": "文化の日", "2026-11-23": "勤労感謝の日",
		"2027-01-01": "元日", "2027-01-11": "成人の日", "2027-02-11": "建国記念の日", "2027-02-23": "天皇誕生日",
		"2027-03-21": "春分の日", "2027-03-22": "振替休日", "2027-04-29": "昭和の日", "2027-05-03": "憲法記念日",
		"2027-05-04": "みどりの日", "2027-05-05": "こどもの日", "2027-07-19": "海の日", "2027-08-11": "山の日",
		"2027-09-20": "敬老の日", "2027-09-23": "秋分の日", "2027-10-11": "スポーツの日", "2027-11-03": "文化の日",
		"2027-11-23": "勤労感謝の日",
	}
	for _, y := range []int{2026, 2027} {
		for d := time.Date(y, 1, 1, 12, 0, 0, 0, JST); d.Year() == y; d = d.AddDate(0, 0, 1) {
			k := d.Format("2006-01-02")
			if got := Holiday(d); got != want[k] {
				t.Errorf("%s: got %q, want %q", k, got, want[k])
			}
		}
	}
}

func TestOutOfHours(t *testing.T) {
	h := Hours{Start: "09:00", End: "18:00", Days: []int{1, 2, 3, 4, 5}}
	cases := []struct {
		at   string
		want bool
	}{
		{"2026-12-03T10:00:00+09:00", false}, // Thursday morning
		{"2026-12-03T08:59:00+09:00", true},
		{"2026-12-03T18:00:00+09:00", true},
		{"2026-12-03T02:00:00Z", false}, // 11:00 JST
		{"2026-12-02T20:00:00Z", true},  // 05:00 JST
		{"2026-12-05T10:00:00+09:00", true},
		{"2026-11-23T10:00:00+09:00", true}, // 勤労感謝の日, a Monday
	}
	for _, c := range cases {
		at, _ := time.Parse(time.RFC3339, c.at)
		if got := OutOfHours(h, at); got != c.want {
			t.Errorf("%s: got %v", c.at, got)
		}
	}
	h.WorkOnHolidays = true
	if at, _ := time.Parse(time.RFC3339, "2026-11-23T10:00:00+09:00"); OutOfHours(h, at) {
		t.Error("holiday work allowed but still out of hours")
	}
	// The office's own days off: 年末年始 every year, one summer day once.
	h.DaysOff = []string{"12-29", "12-30", "12-31", "01-02", "01-03", "2026-08-13"}
	for at, want := range map[string]bool{
		"2026-12-29T10:00:00+09:00": true,  // a Tuesday in 年末年始
		"2027-01-02T10:00:00+09:00": true,  // a Saturday anyway
		"2027-12-30T10:00:00+09:00": true,  // a Thursday, next year's 年末年始
		"2027-01-04T10:00:00+09:00": false, // back to work on Monday
		"2026-08-13T10:00:00+09:00": true,  // that summer day
		"2027-08-13T10:00:00+09:00": false, // a date with a year is that day only
		"2026-12-28T15:00:00Z":      true,  // 00:00 JST on the 29th
	} {
		tm, _ := time.Parse(time.RFC3339, at)
		if got := OutOfHours(h, tm); got != want {
			t.Errorf("days off, %s: got %v", at, got)
		}
	}
}
