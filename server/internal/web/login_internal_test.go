package web

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/hosts": "/hosts", "/hosts?x=1&y=%20": "/hosts?x=1&y=%20", "/registers/media/": "/registers/media",
		"//evil.example": "/", "/\\evil.example": "/", "/\t/evil.example/x": "/", "/%09/x": "/",
		"/%5cevil": "/", "https://evil.example": "/", "/..//evil.example": "/evil.example", "": "/",
		"/a/%2F%2Fevil.example": "/a/evil.example",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "/%09/x", "/a?b=c", "http://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := localPath(in)
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.ContainsAny(out, "\\\t\r\n\x00") ||
			!utf8.ValidString(out) {
			t.Fatalf("localPath(%q) = %q", in, out)
		}
	})
}

func TestThrottleLogSummarises(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	var timers []func()
	var got []throttleSummary
	tl := newThrottleLog(func() time.Time { return now }, func(_ string, s throttleSummary) { got = append(got, s) })
	tl.afterFunc = func(_ time.Duration, f func()) { timers = append(timers, f) }
	if !tl.add("10.0.0.1", "admin") {
		t.Fatal("first refused attempt of a window not reported as first")
	}
	for i := range 999 {
		now = now.Add(time.Millisecond)
		if tl.add("10.0.0.1", "user"+strings.Repeat("x", i%20)) {
			t.Fatal("a later attempt opened another window")
		}
	}
	if len(timers) != 1 {
		t.Fatalf("%d windows", len(timers))
	}
	timers[0]()
	if len(got) != 1 || got[0].Count != 999 || len(got[0].Names) != maxSummaryNames {
		t.Fatalf("summary %+v", got)
	}
	if !tl.add("10.0.0.1", "admin") {
		t.Fatal("no new window after the summary")
	}
}

func TestLimiterBackoff(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	l := newLimiter(func() time.Time { return now }, 5, 15*time.Minute)
	for range 5 {
		if !l.allowed("k") {
			t.Fatal("refused under the limit")
		}
		l.fail("k")
	}
	if l.allowed("k") {
		t.Fatal("allowed right after the fifth failure")
	}
	now = now.Add(31 * time.Second)
	if !l.allowed("k") {
		t.Fatal("not allowed after the first backoff")
	}
	l.fail("k")
	now = now.Add(31 * time.Second)
	if l.allowed("k") {
		t.Fatal("backoff did not double")
	}
	now = now.Add(30 * time.Second)
	if !l.allowed("k") {
		t.Fatal("not allowed after the doubled backoff")
	}
	if !l.allowed("other") {
		t.Fatal("another key is refused")
	}
}

func TestBoundName(t *testing.T) {
	if s := boundName(strings.Repeat("管", 100)); len(s) > maxLoggedName+3 || !utf8.ValidString(s) {
		t.Fatalf("%q", s)
	}
	if s := boundName("a\x00b\xff"); strings.ContainsAny(s, "\x00") || !utf8.ValidString(s) {
		t.Fatalf("%q", s)
	}
}

// FuzzBoundName: whatever the login form sends as a user name, what is
// stored is short valid UTF-8 without control characters.
func FuzzBoundName(f *testing.F) {
	for _, s := range []string{"admin", strings.Repeat("管理者", 100), "a\x00b", "\xff\xfe", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := boundName(in)
		if len(out) > maxLoggedName+len("…") || !utf8.ValidString(out) {
			t.Fatalf("boundName(%q) = %q", in, out)
		}
		for _, r := range out {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("boundName(%q) keeps a control character", in)
			}
		}
	})
}
