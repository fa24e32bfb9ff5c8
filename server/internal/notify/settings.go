package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/width"

	"github.com/mamori/mamori/server/internal/notify/alertkind"
)

// Rule kinds: what a rule reacts to (the classification's, alertkind).
const (
	KindViolation       = alertkind.Violation
	KindSilent          = alertkind.Silent
	KindBulkCopy        = alertkind.BulkCopy
	KindMedia           = alertkind.Media
	KindOutOfHours      = alertkind.OutOfHours
	KindBackup          = alertkind.Backup
	KindIntegrity       = alertkind.Integrity
	KindLoginFailures   = alertkind.LoginFailures
	KindIncidentOverdue = alertkind.IncidentOverdue
)

// Kinds lists every rule kind.
var Kinds = []string{KindViolation, KindSilent, KindBulkCopy, KindMedia, KindOutOfHours, KindBackup,
	KindIntegrity, KindLoginFailures, KindIncidentOverdue}

// kindJA names each kind in Japanese for subjects and bodies.
var kindJA = map[string]string{
	KindViolation:       "管理策違反",
	KindSilent:          "エージェント応答なし",
	KindBulkCopy:        "登録フォルダからの大量コピー",
	KindMedia:           "未登録・未承認の媒体",
	KindOutOfHours:      "業務時間外のアクセス",
	KindBackup:          "バックアップ期限超過",
	KindIntegrity:       "ログの完全性",
	KindLoginFailures:   "ログイン失敗の繰り返し",
	KindIncidentOverdue: "漏えい等報告の期限超過",
}

// Webhook formats.
const (
	FormatGeneric = "generic"
	FormatTeams   = "teams"
	FormatSlack   = "slack"
)

// SMTP security modes.
const (
	SecuritySTARTTLS = "starttls" // port 587: plain connect, then STARTTLS (required)
	SecurityTLS      = "tls"      // port 465: implicit TLS
	SecurityNone     = "none"     // loopback relays only
)

// Mail charsets.
const (
	CharsetISO2022JP = "iso-2022-jp"
	CharsetUTF8      = "utf-8"
)

// Duration is a time.Duration written as a Go duration string ("10m").
type Duration time.Duration

// String is the duration as people write it: "5m", "1h", "90s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if t, ok := strings.CutSuffix(s, "m0s"); ok {
		s = t + "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"10m\": %w", err)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// jaUnits are the Japanese spellings of duration units people type.
var jaUnits = strings.NewReplacer("時間", "h", "分間", "m", "分", "m", "秒間", "s", "秒", "s", "ミリ秒", "ms")

// ParseDuration reads a Go duration ("90s", "2m", "1h30m"), also as a
// Japanese admin writes it ("2分", "１時間30分", "45秒").
func ParseDuration(s string) (time.Duration, error) {
	t := strings.ReplaceAll(jaUnits.Replace(width.Fold.String(strings.TrimSpace(s))), " ", "")
	v, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write it as \"90s\", \"2m\", \"1h\" or \"2分\"", s)
	}
	return v, nil
}

// Settings is the whole notification configuration, kept in etcd.
type Settings struct {
	// Defaults is true in an answer when no settings are stored and the
	// rules are the defaults of the built-in packs in use; ignored on PUT.
	AreDefaults bool      `json:"defaults,omitempty"`
	SMTP        *SMTP     `json:"smtp,omitempty"`
	Webhooks    []Webhook `json:"webhooks"`
	Rules       []Rule    `json:"rules"`
	// Departments holds per-department recipients and working hours.
	Departments map[string]Department `json:"departments"`
	// Hours are the working hours of departments without their own.
	Hours Hours `json:"hours"`
	// RateLimit is the most messages one rule (per department, with
	// department recipients) sends per hour, in bursts of 3; further
	// alerts wait and are merged into the next message. Default 12.
	RateLimit int   `json:"rate_limit_per_hour"`
	Retry     Retry `json:"retry"`
	// MonthlyReport, if set, mails last month's audit report (HTML and
	// CSV attached) on the first day of each month.
	MonthlyReport *MonthlyReport `json:"monthly_report,omitempty"`
}

// MonthlyReport says who gets the monthly audit report.
type MonthlyReport struct {
	Recipients []string `json:"recipients"`
	Department string   `json:"department,omitempty"` // "" for all
}

// SMTP is the mail relay.
type SMTP struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Security string `json:"security"` // starttls | tls | none
	Username string `json:"username,omitempty"`
	// Password is never answered by GET; a PUT without it keeps the stored one.
	Password    string `json:"password,omitempty"`
	PasswordSet bool   `json:"password_set,omitempty"`
	From        string `json:"from"`
	Charset     string `json:"charset"` // iso-2022-jp (default) | utf-8
	// CAPEM, if set, is the CA the relay's certificate must chain to
	// (a private relay); default the system roots.
	CAPEM string `json:"ca_pem,omitempty"`
}

// Webhook is one chat or HTTP endpoint.
type Webhook struct {
	Name   string `json:"name"`
	URL    string `json:"url"`
	Format string `json:"format"` // generic | teams | slack
}

// Rule says which alerts go where.
type Rule struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Disabled bool   `json:"disabled,omitempty"`
	// Default marks a rule a built-in pack implies (DefaultRules); it may
	// have no recipients yet, and then only the pages show its alerts.
	Default bool `json:"default,omitempty"`
	// Departments limits the rule to these departments; empty means all.
	Departments []string `json:"departments,omitempty"`
	Recipients  []string `json:"recipients,omitempty"` // mail addresses
	Webhooks    []string `json:"webhooks,omitempty"`   // names of Settings.Webhooks
	// DepartmentRecipients also mails the recipients of each alert's
	// department (Settings.Departments); alerts are then grouped per department.
	DepartmentRecipients bool `json:"department_recipients,omitempty"`
	// Delay is how long alerts are collected into one message after the
	// first one (grouping); default 1m.
	Delay Duration `json:"delay,omitempty"`
	// Threshold: login_failures only, failures of one user within Delay
	// that make an alert; default 5.
	Threshold int `json:"threshold,omitempty"`
	// RepeatAfter: violation and silent only. A PC whose control keeps
	// turning fail and pass again (or that keeps going silent) is mailed
	// again about it only this long after the last time; the alerts in
	// between are on the pages and counted into the next message. Default 1h.
	RepeatAfter Duration `json:"repeat_after,omitempty"`
}

// Department holds a department's recipients and working hours.
type Department struct {
	Recipients []string `json:"recipients,omitempty"`
	Hours      *Hours   `json:"hours,omitempty"`
}

// Hours are working hours in Japan time. Days are weekdays 0 (Sunday) to
// 6; Japanese public holidays are outside working hours unless
// WorkOnHolidays is set.
type Hours struct {
	Start          string `json:"start"` // "09:00"
	End            string `json:"end"`   // "18:00"
	Days           []int  `json:"days"`
	WorkOnHolidays bool   `json:"work_on_holidays,omitempty"`
	// DaysOff are the office's own days off: "MM-DD" every year (年末年始
	// "12-29" ... "01-03"), "YYYY-MM-DD" that day only.
	DaysOff []string `json:"days_off,omitempty"`
}

// Retry bounds the delivery attempts of one message.
type Retry struct {
	Attempts int      `json:"attempts"` // default 6
	Initial  Duration `json:"initial"`  // first wait, doubled each time; default 30s
	Max      Duration `json:"max"`      // longest wait; default 15m
}

// Defaults fills what the admin left out.
func (s *Settings) Defaults() {
	if s.RateLimit == 0 {
		s.RateLimit = 12
	}
	if s.Retry.Attempts == 0 {
		s.Retry.Attempts = 6
	}
	if s.Retry.Initial == 0 {
		s.Retry.Initial = Duration(30 * time.Second)
	}
	if s.Retry.Max == 0 {
		s.Retry.Max = Duration(15 * time.Minute)
	}
	if s.Hours.Start == "" && s.Hours.End == "" && len(s.Hours.Days) == 0 {
		s.Hours = Hours{Start: "09:00", End: "18:00", Days: []int{1, 2, 3, 4, 5}}
	}
	if s.SMTP != nil && s.SMTP.Charset == "" {
		s.SMTP.Charset = CharsetISO2022JP
	}
	if s.Webhooks == nil {
		s.Webhooks = []Webhook{}
	}
	if s.Rules == nil {
		s.Rules = []Rule{}
	}
	if s.Departments == nil {
		s.Departments = map[string]Department{}
	}
	for i := range s.Rules {
		r := &s.Rules[i]
		if r.Delay == 0 {
			r.Delay = Duration(time.Minute)
		}
		if r.Kind == KindLoginFailures && r.Threshold == 0 {
			r.Threshold = 5
		}
		if (r.Kind == KindViolation || r.Kind == KindSilent) && r.RepeatAfter == 0 {
			r.RepeatAfter = Duration(time.Hour)
		}
	}
}

// ErrConflict is wrapped by PutSettings when the settings changed since
// the revision given.
var ErrConflict = errors.New("notify: settings changed since that revision")

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("notify: invalid settings")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks s after Defaults; the first problem is returned.
func (s *Settings) Validate() error {
	if s.RateLimit < 1 || s.RateLimit > 3600 {
		return invalid("rate_limit_per_hour must be 1..3600")
	}
	if s.Retry.Attempts < 1 || s.Retry.Attempts > 20 {
		return invalid("retry.attempts must be 1..20")
	}
	if s.Retry.Initial < Duration(10*time.Millisecond) || s.Retry.Max < s.Retry.Initial || s.Retry.Max > Duration(24*time.Hour) {
		return invalid("retry.initial must be >= 10ms and retry.max between it and 24h")
	}
	if err := s.Hours.validate("hours"); err != nil {
		return err
	}
	if m := s.SMTP; m != nil {
		switch {
		case m.Host == "" || strings.ContainsAny(m.Host, " /\r\n"):
			return invalid("smtp.host is required")
		case m.Port < 1 || m.Port > 65535:
			return invalid("smtp.port must be 1..65535")
		case m.Security != SecuritySTARTTLS && m.Security != SecurityTLS && m.Security != SecurityNone:
			return invalid("smtp.security must be starttls, tls or none")
		case m.Charset != CharsetISO2022JP && m.Charset != CharsetUTF8:
			return invalid("smtp.charset must be iso-2022-jp or utf-8")
		case m.Password != "" && m.Username == "":
			return invalid("smtp.password without smtp.username")
		case m.Security == SecurityNone && !IsLoopback(m.Host):
			// Alerts name PCs and people, and a password would go in clear.
			return invalid("smtp.security none is only for a relay on this machine (127.0.0.1, ::1, localhost); use starttls or tls")
		}
		if _, err := mail.ParseAddress(m.From); err != nil {
			return invalid("smtp.from %q is not a mail address", m.From)
		}
	}
	hooks := map[string]bool{}
	for i, w := range s.Webhooks {
		if w.Name == "" || len(w.Name) > 64 || hooks[w.Name] {
			return invalid("webhooks[%d].name must be 1..64 bytes and unique", i)
		}
		hooks[w.Name] = true
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return invalid("webhooks[%d].url must be an http(s) URL", i)
		}
		if strings.ContainsFunc(w.URL, unicode.IsSpace) {
			// A URL pasted with a line break or space posts somewhere else.
			return invalid("webhooks[%d].url has a space or line break in it: paste the URL again as one piece", i)
		}
		if w.Format != FormatGeneric && w.Format != FormatTeams && w.Format != FormatSlack {
			return invalid("webhooks[%d].format must be generic, teams or slack", i)
		}
	}
	for d, dep := range s.Departments {
		if d == "" || len(d) > 128 {
			return invalid("department names must be 1..128 bytes")
		}
		if err := checkAddrs("departments."+d+".recipients", dep.Recipients); err != nil {
			return err
		}
		if dep.Hours != nil {
			if err := dep.Hours.validate("departments." + d + ".hours"); err != nil {
				return err
			}
		}
	}
	if m := s.MonthlyReport; m != nil {
		if s.SMTP == nil || len(m.Recipients) == 0 {
			return invalid("monthly_report needs recipients and an smtp relay")
		}
		if err := checkAddrs("monthly_report.recipients", m.Recipients); err != nil {
			return err
		}
	}
	names := map[string]bool{}
	for i, r := range s.Rules {
		where := fmt.Sprintf("rules[%d]", i)
		if r.Name == "" || len(r.Name) > 64 || names[r.Name] {
			return invalid("%s.name must be 1..64 bytes and unique", where)
		}
		names[r.Name] = true
		if !contains(Kinds, r.Kind) {
			return invalid("%s.kind %q is not one of %s", where, r.Kind, strings.Join(Kinds, ", "))
		}
		if err := checkAddrs(where+".recipients", r.Recipients); err != nil {
			return err
		}
		if len(r.Recipients) > 0 || r.DepartmentRecipients {
			if s.SMTP == nil {
				return invalid("%s mails recipients but no smtp relay is set", where)
			}
		}
		for _, h := range r.Webhooks {
			if !hooks[h] {
				return invalid("%s.webhooks: no webhook named %q", where, h)
			}
		}
		if len(r.Recipients) == 0 && len(r.Webhooks) == 0 && !r.DepartmentRecipients && !r.Default {
			return invalid("%s has no recipients, webhooks or department recipients", where)
		}
		if r.Delay < 0 || r.Delay > Duration(24*time.Hour) {
			return invalid("%s.delay must be 0..24h", where)
		}
		if r.Threshold < 0 || r.Threshold > 10000 {
			return invalid("%s.threshold must be 0..10000", where)
		}
		switch {
		case r.RepeatAfter != 0 && r.Kind != KindViolation && r.Kind != KindSilent:
			return invalid("%s.repeat_after is for violation and silent rules only", where)
		case r.RepeatAfter < 0 || r.RepeatAfter > Duration(7*24*time.Hour):
			return invalid("%s.repeat_after must be 0..168h (7 days)", where)
		}
	}
	return nil
}

func (h Hours) validate(where string) error {
	if _, err := clock(h.Start); err != nil {
		return invalid("%s.start: %v", where, err)
	}
	end, err := clock(h.End)
	if err != nil {
		return invalid("%s.end: %v", where, err)
	}
	if start, _ := clock(h.Start); end <= start {
		return invalid("%s: end %s must be after start %s on the same day (working hours across midnight are not supported: give the day's hours, e.g. 09:00-18:00)", where, h.End, h.Start)
	}
	for _, d := range h.Days {
		if d < 0 || d > 6 {
			return invalid("%s.days: %d is not a weekday 0..6", where, d)
		}
	}
	if len(h.DaysOff) > 366 {
		return invalid("%s.days_off: at most 366 days", where)
	}
	for _, d := range h.DaysOff {
		if !validDayOff(d) {
			return invalid("%s.days_off: %q is not a date MM-DD (every year) or YYYY-MM-DD", where, d)
		}
	}
	return nil
}

// validDayOff accepts "MM-DD" (a day that exists in a leap year) and
// "YYYY-MM-DD".
func validDayOff(d string) bool {
	if len(d) == 5 {
		d = "2024-" + d // a leap year: 02-29 is a day off in the years that have it
	}
	t, err := time.Parse(time.DateOnly, d)
	return err == nil && t.Format(time.DateOnly) == d
}

// clock parses "HH:MM" into minutes after midnight; "24:00" is allowed.
func clock(s string) (int, error) {
	hh, mm, ok := strings.Cut(s, ":")
	h, err1 := strconv.Atoi(hh)
	m, err2 := strconv.Atoi(mm)
	if !ok || err1 != nil || err2 != nil || len(mm) != 2 || h < 0 || m < 0 || m > 59 || h*60+m > 24*60 {
		return 0, fmt.Errorf("%q is not a time HH:MM", s)
	}
	return h*60 + m, nil
}

func checkAddrs(where string, as []string) error {
	if len(as) > 100 {
		return invalid("%s: at most 100 addresses", where)
	}
	for _, a := range as {
		if _, err := mail.ParseAddress(a); err != nil || strings.ContainsAny(a, "\r\n") {
			return invalid("%s: %q is not a mail address", where, a)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ParseSettings decodes a PUT body strictly (unknown fields are errors),
// fills defaults and validates.
func ParseSettings(b []byte) (Settings, error) {
	var s Settings
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Settings{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return Settings{}, invalid("trailing data after the JSON object")
	}
	s.Defaults()
	if err := s.Validate(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// Redacted is s as answered by GET: no password, only whether one is set.
func (s Settings) Redacted() Settings {
	if s.SMTP != nil {
		m := *s.SMTP
		m.PasswordSet = m.Password != ""
		m.Password = ""
		s.SMTP = &m
	}
	return s
}

// IsLoopback says whether host names this machine (security none is only for such a relay).
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// durationJA writes d in Japanese: "1時間", "1時間30分", "45秒".
func durationJA(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, sec := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%d時間", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%d分", m)
	}
	if sec > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%d秒", sec)
	}
	return b.String()
}
