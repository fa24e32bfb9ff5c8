package labels

import (
	"strconv"
	"strings"
	"time"
)

// Duration says d for people: 10秒, 5分, 1時間30分, 2日 in Japanese; 10s,
// 5m, 1h30m, 2d in English (Go's 1h30m0s without the zero parts). Below a
// second it keeps milliseconds (250ミリ秒); above, it drops what is less
// than a second.
func Duration(d time.Duration, lang string) string {
	if d < 0 {
		return "-" + Duration(-d, lang)
	}
	ja := lang != EN
	if d == 0 {
		if ja {
			return "0秒"
		}
		return "0s"
	}
	if d < time.Second {
		ms := d.Round(time.Millisecond) / time.Millisecond
		if ja {
			return strconv.FormatInt(int64(ms), 10) + "ミリ秒"
		}
		return strconv.FormatInt(int64(ms), 10) + "ms"
	}
	d = d.Round(time.Second)
	units := []struct {
		d      time.Duration
		ja, en string
	}{{24 * time.Hour, "日", "d"}, {time.Hour, "時間", "h"}, {time.Minute, "分", "m"}, {time.Second, "秒", "s"}}
	var b strings.Builder
	for _, u := range units {
		n := d / u.d
		if n == 0 {
			continue
		}
		d -= n * u.d
		b.WriteString(strconv.FormatInt(int64(n), 10))
		if ja {
			b.WriteString(u.ja)
		} else {
			b.WriteString(u.en)
		}
	}
	return b.String()
}

// DurationText says a duration written as Go writes it ("10s", "1h0m0s")
// with Duration, or returns s unchanged when it is not one.
func DurationText(s, lang string) string {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return s
	}
	return Duration(d, lang)
}
