// Package policy defines the Mamori policy (apiVersion mamori/v1, kind
// Policy): which controls run on an agent, in which mode, with which
// settings. It parses the YAML admins write, validates it with errors that
// name the line and field, and is sent to agents as JSON.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// APIVersion and Kind every policy document carries.
const (
	APIVersion = "mamori/v1"
	Kind       = "Policy"
)

// Mode says what a control does.
type Mode string

const (
	Off     Mode = "off"     // not running
	Audit   Mode = "audit"   // observe and record only
	Enforce Mode = "enforce" // observe, record and correct
)

// Enabled reports whether the control should run at all.
func (m Mode) Enabled() bool { return m == Audit || m == Enforce }

// Duration is a time.Duration written as a Go duration string ("10m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"10m\"")
	}
	return d.set(s)
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a string such as \"10m\"", n.Line)
	}
	if err := d.set(n.Value); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func (d *Duration) set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use Go durations such as 90s, 10m, 26h)", s)
	}
	*d = Duration(v)
	return nil
}

// Policy is one policy document.
type Policy struct {
	APIVersion  string   `json:"apiVersion" yaml:"apiVersion"`
	Kind        string   `json:"kind" yaml:"kind"`
	Name        string   `json:"name" yaml:"name"`
	Description string   `json:"description,omitempty" yaml:"description,omitempty"`
	Controls    Controls `json:"controls" yaml:"controls"`
}

// Controls holds each control's section; a missing section means off.
type Controls struct {
	Screenlock Screenlock `json:"screenlock" yaml:"screenlock"`
	Media      Media      `json:"media" yaml:"media"`
	FileAccess FileAccess `json:"fileaccess" yaml:"fileaccess"`
	Backup     Backup     `json:"backup" yaml:"backup"`
	Posture    Posture    `json:"posture" yaml:"posture"`
	Agent      Agent      `json:"agent" yaml:"agent"`
}

// AllOff says whether every control is off: PCs under such a policy check
// and record nothing, access to personal-data folders included.
func (c Controls) AllOff() bool {
	for _, m := range []Mode{c.Screenlock.Mode, c.Media.Mode, c.FileAccess.Mode, c.Backup.Mode, c.Posture.Mode} {
		if m != "" && m != Off {
			return false
		}
	}
	return true
}

// Clauses lists the clause references a section proves (PPC 通則編, JIS Q
// 15001); they travel with the policy into events and evidence reports.
type Clauses []string

// Screenlock: lock the screen with a password after max_idle.
type Screenlock struct {
	Mode            Mode     `json:"mode" yaml:"mode"`
	MaxIdle         Duration `json:"max_idle,omitempty" yaml:"max_idle,omitempty"`
	RequirePassword bool     `json:"require_password,omitempty" yaml:"require_password,omitempty"`
	Clauses         Clauses  `json:"clauses,omitempty" yaml:"clauses,omitempty"`
}

// Media access defaults.
const (
	MediaAllow    = "allow"
	MediaReadOnly = "read_only"
	MediaBlock    = "block"
)

// Media: removable storage.
type Media struct {
	Mode            Mode            `json:"mode" yaml:"mode"`
	Default         string          `json:"default,omitempty" yaml:"default,omitempty"` // allow | read_only | block
	AllowRegistered bool            `json:"allow_registered,omitempty" yaml:"allow_registered,omitempty"`
	AllowSerials    []string        `json:"allow_serials,omitempty" yaml:"allow_serials,omitempty"`
	LogFileWrites   bool            `json:"log_file_writes,omitempty" yaml:"log_file_writes,omitempty"`
	Registered      []RegisteredMed `json:"registered,omitempty" yaml:"registered,omitempty"` // compiled from the media register
	Approvals       []Approval      `json:"approvals,omitempty" yaml:"approvals,omitempty"`   // compiled from carry-out approvals
	Clauses         Clauses         `json:"clauses,omitempty" yaml:"clauses,omitempty"`
}

// RegisteredMed is one active entry of the media register (媒体管理台帳).
type RegisteredMed struct {
	RegisterID string `json:"register_id" yaml:"register_id"`
	Serial     string `json:"serial" yaml:"serial"`
	VendorID   string `json:"vendor_id,omitempty" yaml:"vendor_id,omitempty"`
	ProductID  string `json:"product_id,omitempty" yaml:"product_id,omitempty"`
}

// Approval is an approved carry-out window (持出し承認) for one device.
type Approval struct {
	ID     string    `json:"id" yaml:"id"`
	Serial string    `json:"serial" yaml:"serial"`
	From   time.Time `json:"from" yaml:"from"`
	To     time.Time `json:"to" yaml:"to"`
}

// FileAccess: access log of folders holding personal data.
type FileAccess struct {
	Mode          Mode     `json:"mode" yaml:"mode"`
	Paths         []string `json:"paths,omitempty" yaml:"paths,omitempty"`
	Folders       []Folder `json:"folders,omitempty" yaml:"folders,omitempty"`               // compiled from the register
	Exclude       []string `json:"exclude" yaml:"exclude,omitempty"`                         // [] (exclude nothing) must reach agents
	BulkThreshold int      `json:"bulk_threshold,omitempty" yaml:"bulk_threshold,omitempty"` // changes per folder per bulk_window
	BulkWindow    Duration `json:"bulk_window,omitempty" yaml:"bulk_window,omitempty"`
	Debounce      Duration `json:"debounce,omitempty" yaml:"debounce,omitempty"`
	Clauses       Clauses  `json:"clauses,omitempty" yaml:"clauses,omitempty"`
}

// Folder is a storage location taken from the personal-information register.
type Folder struct {
	Path       string `json:"path" yaml:"path"`
	RegisterID string `json:"register_id" yaml:"register_id"`
}

// Backup: verified copies of the folders, or observation of an external backup.
type Backup struct {
	Mode        Mode     `json:"mode" yaml:"mode"`
	Method      string   `json:"method,omitempty" yaml:"method,omitempty"` // copy (agent-run, default) | observe
	Sources     []string `json:"sources,omitempty" yaml:"sources,omitempty"`
	Folders     []Folder `json:"folders,omitempty" yaml:"folders,omitempty"` // compiled from the register
	Destination string   `json:"destination,omitempty" yaml:"destination,omitempty"`
	Schedule    Duration `json:"schedule,omitempty" yaml:"schedule,omitempty"` // interval between runs
	MaxAge      Duration `json:"max_age,omitempty" yaml:"max_age,omitempty"`
	Generations int      `json:"generations,omitempty" yaml:"generations,omitempty"`
	Clauses     Clauses  `json:"clauses,omitempty" yaml:"clauses,omitempty"`
}

// Requirement values for posture checks.
const (
	Required = "required"
	Optional = "optional"
)

// Posture: disk encryption, anti-virus, OS updates, firewall.
type Posture struct {
	Mode            Mode     `json:"mode" yaml:"mode"`
	DiskEncryption  string   `json:"disk_encryption,omitempty" yaml:"disk_encryption,omitempty"`
	Antivirus       string   `json:"antivirus,omitempty" yaml:"antivirus,omitempty"`
	Firewall        string   `json:"firewall,omitempty" yaml:"firewall,omitempty"`
	SignatureMaxAge Duration `json:"signature_max_age,omitempty" yaml:"signature_max_age,omitempty"`
	OSUpdateMaxAge  Duration `json:"os_update_max_age,omitempty" yaml:"os_update_max_age,omitempty"`
	Clauses         Clauses  `json:"clauses,omitempty" yaml:"clauses,omitempty"`
}

// Agent: the agent's own liveness.
type Agent struct {
	Heartbeat   Duration `json:"heartbeat,omitempty" yaml:"heartbeat,omitempty"`
	SilentAfter Duration `json:"silent_after,omitempty" yaml:"silent_after,omitempty"`
	// Servers, when set, replaces the agents' server list: https URLs tried
	// in order, with failover and a return to the first.
	Servers []string `json:"servers,omitempty" yaml:"servers,omitempty"`
	Clauses Clauses  `json:"clauses,omitempty" yaml:"clauses,omitempty"`
}

// MaxServers bounds controls.agent.servers.
const MaxServers = 16

// Defaults applied by Normalize where a field is left empty.
const (
	DefaultHeartbeat     = 5 * time.Minute
	DefaultSilentAfter   = 30 * time.Minute
	DefaultMaxIdle       = 10 * time.Minute
	DefaultBulkThreshold = 200
	DefaultBulkWindow    = 10 * time.Second
	DefaultDebounce      = 300 * time.Millisecond
	DefaultBackupMaxAge  = 26 * time.Hour
	DefaultGenerations   = 7
)

// Bounds of settings a policy writes; a key left out takes its default.
// The agent controls rely on them (screenlock, backup) or cannot honour less
// (fileaccess's housekeeping tick is never under 100ms).
const (
	MinMaxIdle      = time.Minute
	MaxMaxIdle      = 24 * time.Hour
	MinHeartbeat    = 10 * time.Second
	MinBulkWindow   = time.Second
	MinDebounce     = 100 * time.Millisecond
	MaxDebounce     = time.Minute
	MinBackupMaxAge = time.Hour
	MinSchedule     = time.Minute
)

// DefaultExclude are the file patterns fileaccess ignores unless the policy
// says otherwise: Office lock files and temp files.
var DefaultExclude = []string{"~$*", "*.tmp"}

// FieldError is a validation error tied to a field path and, when parsed from
// YAML, a line.
type FieldError struct {
	Line  int    // 0 when unknown
	Field string // dotted path, e.g. controls.screenlock.max_idle; "" when Msg names the place
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" { // the message names the place (an unknown key)
		if e.Line > 0 {
			return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
		}
		return e.Msg
	}
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// Errors is every problem found in one document.
type Errors []*FieldError

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return "policy: " + strings.Join(s, "; ")
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`)

// ValidName reports whether s can name a policy (lower-case DNS-label-like).
func ValidName(s string) bool { return nameRE.MatchString(s) }

// MaxDocumentSize bounds a policy document.
const MaxDocumentSize = 1 << 20

// Parse decodes and validates a YAML (or JSON, which is YAML) policy, as
// an admin writes it: every check an agent's control makes is made here, so
// a policy the server takes is one agents apply. Unknown fields are errors.
// The result is normalized.
func Parse(doc []byte) (*Policy, error) { return parse(doc, true) }

// ParseStored reads a policy the server stored, with the checks of the
// server that stored it (Parse's before the agents' checks joined them): a
// policy stored before an upgrade made a check stricter keeps working, and
// each agent control still refuses what it cannot apply.
func ParseStored(doc []byte) (*Policy, error) { return parse(doc, false) }

func parse(doc []byte, strict bool) (*Policy, error) {
	if len(doc) > MaxDocumentSize {
		return nil, fmt.Errorf("policy: document is %d bytes, limit %d", len(doc), MaxDocumentSize)
	}
	if n := notUTF8(doc); n > 0 {
		return nil, fmt.Errorf("policy: line %d: the file is not UTF-8 (Shift_JIS or another encoding?): save it as UTF-8", n)
	}
	var root yaml.Node
	docs := yaml.NewDecoder(bytes.NewReader(doc))
	if err := docs.Decode(&root); err != nil && err != io.EOF {
		return nil, syntaxError(doc, err)
	}
	if len(root.Content) == 0 {
		return nil, errors.New("policy: empty document")
	}
	// A CSV or a text given by mistake is one YAML string, not a mapping:
	// say what the file is not, rather than "cannot unmarshal !!str".
	if top := root.Content[0]; top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("policy: line %d: this is not a policy: a policy is YAML keys starting with \"apiVersion: mamori/v1\", \"kind: Policy\" and \"name:\" (see the packs in policies/)", top.Line)
	}
	// Only the first document would be applied; the rest dropped without a
	// word. A stored policy is read as the server that took it read it.
	if strict {
		var next yaml.Node
		switch err := docs.Decode(&next); {
		case err == io.EOF:
		case err != nil:
			return nil, fmt.Errorf("policy: a second YAML document follows the first (%v): a policy file holds one document", strings.TrimPrefix(syntaxError(doc, err).Error(), "policy: "))
		default:
			return nil, fmt.Errorf("policy: line %d: a second YAML document starts here: a policy file holds one document (remove this \"---\" and what follows, or make it a file of its own)", next.Line)
		}
	}
	var unknown Errors
	unknownKeys(root.Content[0], reflect.TypeFor[Policy](), "", &unknown)
	if len(unknown) > 0 {
		return nil, unknown
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	lines, nulls := map[string]int{}, map[string]bool{}
	indexLines(root.Content[0], "", lines, nulls)
	// Only YAML can tell a key written as 0 from one left out (null counts
	// as left out); JSON from the server is normalized, so has no zeros.
	written := func(field string) bool { _, ok := lines[field]; return ok && !nulls[field] }
	if !strict {
		written = nil
	}
	if errs := p.validate(written); len(errs) > 0 {
		for _, e := range errs {
			e.Line = lineOf(lines, e.Field)
		}
		return nil, errs
	}
	p.Normalize()
	return &p, nil
}

// ParseJSON decodes and validates the JSON form agents receive.
func ParseJSON(b []byte) (*Policy, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var p Policy
	if err := d.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if errs := p.validate(nil); len(errs) > 0 {
		return nil, errs
	}
	p.Normalize()
	return &p, nil
}

// Validate checks the policy's fields; the error is an Errors.
func (p *Policy) Validate() error {
	if errs := p.validate(nil); len(errs) > 0 {
		return errs
	}
	return nil
}

// Version is a stable digest of the policy's JSON form: agents and the
// server compare it to tell whether a policy changed.
func (p *Policy) Version() string {
	b, _ := json.Marshal(p)
	return JSONVersion(b)
}

// JSONVersion is the version of a policy's JSON form as the server sends it
// (json.Marshal of the Policy): agents check a stored policy with it.
func JSONVersion(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Normalize fills defaults for enabled controls.
func (p *Policy) Normalize() {
	c := &p.Controls
	for _, m := range []*Mode{&c.Screenlock.Mode, &c.Media.Mode, &c.FileAccess.Mode, &c.Backup.Mode, &c.Posture.Mode} {
		if *m == "" {
			*m = Off
		}
	}
	if c.Agent.Heartbeat == 0 {
		c.Agent.Heartbeat = Duration(DefaultHeartbeat)
	}
	if c.Agent.SilentAfter == 0 {
		c.Agent.SilentAfter = Duration(DefaultSilentAfter)
	}
	if c.Screenlock.MaxIdle == 0 {
		c.Screenlock.MaxIdle = Duration(DefaultMaxIdle)
	}
	if c.Media.Default == "" {
		c.Media.Default = MediaAllow
	}
	if c.FileAccess.Exclude == nil {
		c.FileAccess.Exclude = append([]string(nil), DefaultExclude...)
	}
	if c.FileAccess.BulkThreshold == 0 {
		c.FileAccess.BulkThreshold = DefaultBulkThreshold
	}
	if c.FileAccess.BulkWindow == 0 {
		c.FileAccess.BulkWindow = Duration(DefaultBulkWindow)
	}
	if c.FileAccess.Debounce == 0 {
		c.FileAccess.Debounce = Duration(DefaultDebounce)
	}
	if c.Backup.Method == "" {
		c.Backup.Method = "copy"
	}
	if c.Backup.MaxAge == 0 {
		c.Backup.MaxAge = Duration(DefaultBackupMaxAge)
	}
	if c.Backup.Generations == 0 {
		c.Backup.Generations = DefaultGenerations
	}
	if c.Backup.Schedule == 0 {
		c.Backup.Schedule = Duration(c.Backup.MaxAge.D() / 2)
	}
	for _, r := range []*string{&c.Posture.DiskEncryption, &c.Posture.Antivirus, &c.Posture.Firewall} {
		if *r == "" {
			*r = Optional
		}
	}
}

// validate checks the fields. written, given when parsing the admin's YAML,
// tells a key written as 0 from one left out, and turns on the authoring
// rules: explicit zeros the defaults would silently replace, the ranges the
// agents need, and the checks each agent control would otherwise make on
// its own (refusing the whole policy there). Without it (ParseJSON on the
// agents) only the older checks run, so a policy an older server sends is
// not refused as a whole: each control still checks its own section.
func (p *Policy) validate(written func(field string) bool) Errors {
	var errs Errors
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	strict := written != nil
	if p.APIVersion != APIVersion {
		add("apiVersion", "must be %q, got %q", APIVersion, p.APIVersion)
	}
	if p.Kind != Kind {
		add("kind", "must be %q, got %q", Kind, p.Kind)
	}
	if !ValidName(p.Name) {
		add("name", "%q is not a valid name (lower-case letters, digits, '.', '_', '-'; at most 64)", p.Name)
	}
	c := &p.Controls
	mode := func(field string, m Mode) {
		switch m {
		case "", Off, Audit, Enforce:
		default:
			add(field, "mode %q is not one of off, audit, enforce", m)
		}
	}
	nonNeg := func(field string, d Duration) {
		if d < 0 {
			add(field, "must not be negative")
		}
	}
	// zero refuses a key written as 0 (Normalize would replace it with the
	// default without a word) and reports whether the value is to be
	// range-checked: set, and not already refused.
	zero := func(field string, isZero bool, lo, def string) bool {
		if !isZero {
			return strict
		}
		if strict && written(field) {
			add(field, "0 is not allowed: the minimum is %s; leave %s out for the default %s", lo, key(field), def)
		}
		return false
	}
	// durIn checks a set duration against lo..hi (hi 0: no upper bound).
	durIn := func(field string, d Duration, lo, hi time.Duration, def string) {
		switch {
		case !zero(field, d == 0, short(lo), def):
		case hi > 0 && (d.D() < lo || d.D() > hi):
			add(field, "%s is out of range: use %s to %s", short(d.D()), short(lo), short(hi))
		case d.D() < lo:
			add(field, "%s is too short: must be at least %s", short(d.D()), short(lo))
		}
	}
	// atLeast is durIn for counts; without strict, only negatives are refused.
	atLeast := func(field string, n, lo int, def string) {
		if !strict && n < 0 || zero(field, n == 0, fmt.Sprint(lo), def) && n < lo {
			add(field, "%d is too small: must be at least %d", n, lo)
		}
	}
	mode("controls.screenlock.mode", c.Screenlock.Mode)
	if f := "controls.screenlock.max_idle"; zero(f, c.Screenlock.MaxIdle == 0, short(MinMaxIdle), short(DefaultMaxIdle)) {
		if err := CheckMaxIdle(c.Screenlock.MaxIdle.D()); err != nil {
			add(f, "%v", err)
		}
	} else if !strict {
		nonNeg(f, c.Screenlock.MaxIdle)
		if c.Screenlock.MaxIdle > 0 && c.Screenlock.MaxIdle.D() < 30*time.Second {
			add(f, "must be at least 30s")
		}
	}
	mode("controls.media.mode", c.Media.Mode)
	switch c.Media.Default {
	case "", MediaAllow, MediaReadOnly, MediaBlock:
	default:
		add("controls.media.default", "%q is not one of allow, read_only, block", c.Media.Default)
	}
	for i, s := range c.Media.AllowSerials {
		if strings.TrimSpace(s) == "" {
			add(fmt.Sprintf("controls.media.allow_serials[%d]", i), "empty serial")
		}
	}
	for i, a := range c.Media.Approvals {
		f := fmt.Sprintf("controls.media.approvals[%d]", i)
		if a.Serial == "" {
			add(f+".serial", "required")
		}
		if !a.To.After(a.From) {
			add(f+".to", "must be after from")
		}
	}
	mode("controls.fileaccess.mode", c.FileAccess.Mode)
	// The agent cannot read all of a filesystem or drive (it reports
	// fileaccess.root_unreadable), and would log the whole machine.
	rootRefused := func(field, pth string) {
		if strict && isRoot(pth) {
			add(field, "%q is the root of a filesystem or drive: watch the folders that hold the personal data", pth)
		}
	}
	for i, pth := range c.FileAccess.Paths {
		f := fmt.Sprintf("controls.fileaccess.paths[%d]", i)
		if !isAbs(pth) {
			add(f, "%q is not an absolute path", pth)
		}
		rootRefused(f, pth)
	}
	for i, fo := range c.FileAccess.Folders {
		rootRefused(fmt.Sprintf("controls.fileaccess.folders[%d].path", i), fo.Path)
	}
	for i, pat := range c.FileAccess.Exclude {
		if _, err := filepath.Match(pat, "x"); err != nil {
			add(fmt.Sprintf("controls.fileaccess.exclude[%d]", i), "bad pattern %q", pat)
		}
	}
	atLeast("controls.fileaccess.bulk_threshold", c.FileAccess.BulkThreshold, 1, fmt.Sprint(DefaultBulkThreshold))
	if strict {
		durIn("controls.fileaccess.bulk_window", c.FileAccess.BulkWindow, MinBulkWindow, 0, short(DefaultBulkWindow))
		// Under 100ms the agent cannot honour it; over a minute, changes
		// reach the log long after they happened.
		durIn("controls.fileaccess.debounce", c.FileAccess.Debounce, MinDebounce, MaxDebounce, short(DefaultDebounce))
	} else {
		nonNeg("controls.fileaccess.bulk_window", c.FileAccess.BulkWindow)
		nonNeg("controls.fileaccess.debounce", c.FileAccess.Debounce)
	}
	b := &c.Backup
	mode("controls.backup.mode", b.Mode)
	switch b.Method {
	case "", "copy", "observe":
	default:
		add("controls.backup.method", "%q is not one of copy, observe", b.Method)
	}
	if b.Mode.Enabled() && b.Destination == "" {
		add("controls.backup.destination", "required when backup is on")
	}
	destOK := b.Destination != "" && isAbs(b.Destination)
	if strict && b.Destination != "" && !destOK {
		add("controls.backup.destination", "%q is not an absolute path (a local folder or mounted share)", b.Destination)
	}
	// The agent refuses a source and destination that hold one another: a
	// copy would back up its own generations, or overwrite the source. A
	// destination in or around a watched folder puts the agent's own copies
	// in the access log. observe writes nothing to its destination.
	overlap := func(field, what, src string) {
		if strict && destOK && b.Method != "observe" && isAbs(src) && Overlap(src, b.Destination) {
			add(field, "%q and destination %q overlap: the backup destination must neither hold nor lie inside a %s", src, b.Destination, what)
		}
	}
	for i, pth := range c.FileAccess.Paths {
		overlap(fmt.Sprintf("controls.fileaccess.paths[%d]", i), "watched folder", pth)
	}
	for i, fo := range c.FileAccess.Folders {
		overlap(fmt.Sprintf("controls.fileaccess.folders[%d].path", i), "watched folder", fo.Path)
	}
	for i, s := range b.Sources {
		f := fmt.Sprintf("controls.backup.sources[%d]", i)
		if !isAbs(s) {
			add(f, "%q is not an absolute path", s)
		}
		overlap(f, "source", s)
	}
	for i, fo := range b.Folders {
		overlap(fmt.Sprintf("controls.backup.folders[%d].path", i), "source", fo.Path)
	}
	if strict {
		durIn("controls.backup.max_age", b.MaxAge, MinBackupMaxAge, 0, short(DefaultBackupMaxAge))
		// Runs further apart than max_age leave every backup overdue
		// before the next; the agent refuses runs under a minute apart.
		maxAge := DefaultBackupMaxAge
		if b.MaxAge > 0 {
			maxAge = b.MaxAge.D()
		}
		durIn("controls.backup.schedule", b.Schedule, MinSchedule, max(maxAge, MinSchedule), "of half of max_age")
	} else {
		nonNeg("controls.backup.max_age", b.MaxAge)
		nonNeg("controls.backup.schedule", b.Schedule)
	}
	atLeast("controls.backup.generations", b.Generations, 1, fmt.Sprint(DefaultGenerations))
	mode("controls.posture.mode", c.Posture.Mode)
	for f, v := range map[string]string{
		"controls.posture.disk_encryption": c.Posture.DiskEncryption,
		"controls.posture.antivirus":       c.Posture.Antivirus,
		"controls.posture.firewall":        c.Posture.Firewall,
	} {
		switch v {
		case "", Required, Optional:
		default:
			add(f, "%q is not one of required, optional", v)
		}
	}
	// 0 is meaningful here: the check is not made.
	nonNeg("controls.posture.os_update_max_age", c.Posture.OSUpdateMaxAge)
	nonNeg("controls.posture.signature_max_age", c.Posture.SignatureMaxAge)
	ag := &c.Agent
	zero("controls.agent.heartbeat", ag.Heartbeat == 0, short(MinHeartbeat), short(DefaultHeartbeat))
	if ag.Heartbeat != 0 && ag.Heartbeat.D() < MinHeartbeat {
		add("controls.agent.heartbeat", "must be at least %s", short(MinHeartbeat))
	}
	if f := "controls.agent.silent_after"; !strict {
		if ag.SilentAfter != 0 && ag.Heartbeat != 0 && ag.SilentAfter <= ag.Heartbeat {
			add(f, "must be longer than heartbeat")
		}
	} else {
		// Compared with the heartbeat agents will use, written or default:
		// otherwise every agent looks silent between two heartbeats.
		hb := DefaultHeartbeat
		if ag.Heartbeat > 0 {
			hb = ag.Heartbeat.D()
		}
		switch {
		case ag.SilentAfter == 0 && written(f):
			add(f, "0 is not allowed: must be longer than heartbeat (%s); leave silent_after out for the default %s", short(hb), short(DefaultSilentAfter))
		case ag.SilentAfter != 0 && ag.SilentAfter.D() <= hb:
			add(f, "%s must be longer than heartbeat (%s)", short(ag.SilentAfter.D()), short(hb))
		case ag.SilentAfter == 0 && DefaultSilentAfter <= hb:
			add(f, "the default %s is not longer than heartbeat (%s): set silent_after", short(DefaultSilentAfter), short(hb))
		}
	}
	if len(ag.Servers) > MaxServers {
		add("controls.agent.servers", "at most %d URLs", MaxServers)
	}
	for i, s := range ag.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			add(fmt.Sprintf("controls.agent.servers[%d]", i), "%q is not https://host:port", s)
		}
	}
	return errs
}

// CheckMaxIdle is the range of screenlock.max_idle the screenlock control
// applies on every OS: whole seconds from 1m to 24h.
func CheckMaxIdle(d time.Duration) error {
	if d < MinMaxIdle || d > MaxMaxIdle || d%time.Second != 0 {
		return fmt.Errorf("%s is out of range: use whole seconds from %s to %s", short(d), short(MinMaxIdle), short(MaxMaxIdle))
	}
	return nil
}

// key is the last name of a dotted field path.
func key(field string) string { return field[strings.LastIndexByte(field, '.')+1:] }

// short writes d without the zero units time.Duration adds: 26h, 1m, 100ms.
func short(d time.Duration) string {
	s := d.String()
	s, _ = strings.CutSuffix(s, "m0s")
	if s != d.String() {
		s += "m"
	}
	if t, ok := strings.CutSuffix(s, "h0m"); ok {
		s = t + "h"
	}
	return s
}

// Overlap reports whether two absolute paths are one folder or one holds
// the other. The server checks policies for agents on every OS, so it reads
// both kinds wherever it runs: Windows paths (C:\..., \\server\share\...)
// with either separator and without regard to case, as NTFS compares names;
// POSIX paths exactly. A pair that is absolute on more than one OS overlaps
// if it does on any of them.
func Overlap(a, b string) bool {
	if strings.HasPrefix(a, "/") && strings.HasPrefix(b, "/") &&
		holds(strings.FieldsFunc(path.Clean(a), isSlash), strings.FieldsFunc(path.Clean(b), isSlash), false) {
		return true
	}
	return winAbs(a) && winAbs(b) && holds(winParts(a), winParts(b), true)
}

// isRoot reports whether an absolute path, cleaned as Overlap cleans it,
// is a filesystem root (/) or a drive root (C:\). A UNC share (\\server\share)
// is a folder on the server, not a root of the PC.
func isRoot(p string) bool {
	if strings.HasPrefix(p, "/") && path.Clean(p) == "/" {
		return true
	}
	if !winAbs(p) {
		return false
	}
	parts := winParts(p)
	return len(parts) == 1 && parts[0] != `\\`
}

func isSlash(r rune) bool { return r == '/' }

// holds reports whether the shorter of two cleaned paths starts the other.
func holds(x, y []string, fold bool) bool {
	if len(x) > len(y) {
		x, y = y, x
	}
	for i := range x {
		if x[i] != y[i] && !(fold && strings.EqualFold(x[i], y[i])) {
			return false
		}
	}
	return true
}

func isWinSep(r rune) bool { return r == '\\' || r == '/' }

// winAbs: a drive path (C:\ or C:/) or a UNC path (\\server\share).
func winAbs(p string) bool {
	if len(p) >= 2 && isWinSep(rune(p[0])) && isWinSep(rune(p[1])) {
		return true
	}
	return len(p) >= 3 && p[1] == ':' && isWinSep(rune(p[2])) && ('A' <= p[0] && p[0] <= 'Z' || 'a' <= p[0] && p[0] <= 'z')
}

// winParts cleans a Windows path into its root (the drive, or \\ server
// share) and names, resolving . and .. as Windows does: never above the root.
func winParts(p string) []string {
	var out []string
	if p[1] == ':' {
		out, p = []string{p[:2]}, p[2:]
	} else {
		out = []string{`\\`}
		f := strings.FieldsFunc(p, isWinSep)
		for len(f) > 0 && len(out) < 3 {
			out, f = append(out, f[0]), f[1:]
		}
		p = strings.Join(f, `\`)
	}
	root := len(out)
	for _, n := range strings.FieldsFunc(p, isWinSep) {
		switch {
		case n == ".":
		case n == "..":
			if len(out) > root {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, n)
		}
	}
	return out
}

// notUTF8 returns the line of the first byte that is not UTF-8, or 0 if
// the document is UTF-8 (or UTF-16 with its byte order mark, which the YAML
// reader decodes itself).
func notUTF8(doc []byte) int {
	if bytes.HasPrefix(doc, []byte{0xfe, 0xff}) || bytes.HasPrefix(doc, []byte{0xff, 0xfe}) || utf8.Valid(doc) {
		return 0
	}
	for i := 0; i < len(doc); {
		r, n := utf8.DecodeRune(doc[i:])
		if r == utf8.RuneError && n == 1 {
			return 1 + bytes.Count(doc[:i], []byte("\n"))
		}
		i += n
	}
	return 0
}

// isAbs accepts absolute paths of any OS the agent runs on: policies are
// written on one machine and applied on another.
func isAbs(p string) bool {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\\`) {
		return true
	}
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/') &&
		('A' <= p[0] && p[0] <= 'Z' || 'a' <= p[0] && p[0] <= 'z')
}

// indexLines records the line of every mapping key and sequence item by
// dotted path (seq items as name[i]), and which keys have a null value.
func indexLines(n *yaml.Node, path string, out map[string]int, nulls map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line
			if v.Tag == "!!null" {
				nulls[p] = true
			}
			indexLines(v, p, out, nulls)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = c.Line
			indexLines(c, p, out, nulls)
		}
	}
}

// lineOf finds the line of field or of its nearest present parent.
func lineOf(lines map[string]int, field string) int {
	for f := field; f != ""; {
		if l, ok := lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}
