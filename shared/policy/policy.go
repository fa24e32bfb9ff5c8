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
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

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
	Folders       []Folder `json:"folders,omitempty" yaml:"folders,omitempty"` // compiled from the register
	Exclude       []string `json:"exclude,omitempty" yaml:"exclude,omitempty"`
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

// DefaultExclude are the file patterns fileaccess ignores unless the policy
// says otherwise: Office lock files and temp files.
var DefaultExclude = []string{"~$*", "*.tmp"}

// FieldError is a validation error tied to a field path and, when parsed from
// YAML, a line.
type FieldError struct {
	Line  int    // 0 when unknown
	Field string // dotted path, e.g. controls.screenlock.max_idle
	Msg   string
}

func (e *FieldError) Error() string {
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

// Parse decodes and validates a YAML (or JSON, which is YAML) policy.
// Unknown fields are errors. The result is normalized.
func Parse(doc []byte) (*Policy, error) {
	if len(doc) > MaxDocumentSize {
		return nil, fmt.Errorf("policy: document is %d bytes, limit %d", len(doc), MaxDocumentSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(root.Content) == 0 {
		return nil, errors.New("policy: empty document")
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	lines := map[string]int{}
	indexLines(root.Content[0], "", lines)
	if errs := p.validate(); len(errs) > 0 {
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
	if errs := p.validate(); len(errs) > 0 {
		return nil, errs
	}
	p.Normalize()
	return &p, nil
}

// Validate checks the policy's fields; the error is an Errors.
func (p *Policy) Validate() error {
	if errs := p.validate(); len(errs) > 0 {
		return errs
	}
	return nil
}

// Version is a stable digest of the policy's JSON form: agents and the
// server compare it to tell whether a policy changed.
func (p *Policy) Version() string {
	b, _ := json.Marshal(p)
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

func (p *Policy) validate() Errors {
	var errs Errors
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
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
	mode("controls.screenlock.mode", c.Screenlock.Mode)
	nonNeg("controls.screenlock.max_idle", c.Screenlock.MaxIdle)
	if c.Screenlock.MaxIdle > 0 && c.Screenlock.MaxIdle.D() < 30*time.Second {
		add("controls.screenlock.max_idle", "must be at least 30s")
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
	for i, pth := range c.FileAccess.Paths {
		if !isAbs(pth) {
			add(fmt.Sprintf("controls.fileaccess.paths[%d]", i), "%q is not an absolute path", pth)
		}
	}
	for i, pat := range c.FileAccess.Exclude {
		if _, err := filepath.Match(pat, "x"); err != nil {
			add(fmt.Sprintf("controls.fileaccess.exclude[%d]", i), "bad pattern %q", pat)
		}
	}
	if c.FileAccess.BulkThreshold < 0 {
		add("controls.fileaccess.bulk_threshold", "must not be negative")
	}
	nonNeg("controls.fileaccess.bulk_window", c.FileAccess.BulkWindow)
	nonNeg("controls.fileaccess.debounce", c.FileAccess.Debounce)
	mode("controls.backup.mode", c.Backup.Mode)
	switch c.Backup.Method {
	case "", "copy", "observe":
	default:
		add("controls.backup.method", "%q is not one of copy, observe", c.Backup.Method)
	}
	if c.Backup.Mode.Enabled() && c.Backup.Destination == "" {
		add("controls.backup.destination", "required when backup is on")
	}
	for i, s := range c.Backup.Sources {
		if !isAbs(s) {
			add(fmt.Sprintf("controls.backup.sources[%d]", i), "%q is not an absolute path", s)
		}
	}
	nonNeg("controls.backup.max_age", c.Backup.MaxAge)
	nonNeg("controls.backup.schedule", c.Backup.Schedule)
	if c.Backup.Generations < 0 {
		add("controls.backup.generations", "must not be negative")
	}
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
	nonNeg("controls.posture.os_update_max_age", c.Posture.OSUpdateMaxAge)
	nonNeg("controls.posture.signature_max_age", c.Posture.SignatureMaxAge)
	if c.Agent.Heartbeat != 0 && c.Agent.Heartbeat.D() < 10*time.Second {
		add("controls.agent.heartbeat", "must be at least 10s")
	}
	if c.Agent.SilentAfter != 0 && c.Agent.Heartbeat != 0 && c.Agent.SilentAfter <= c.Agent.Heartbeat {
		add("controls.agent.silent_after", "must be longer than heartbeat")
	}
	if len(c.Agent.Servers) > MaxServers {
		add("controls.agent.servers", "at most %d URLs", MaxServers)
	}
	for i, s := range c.Agent.Servers {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			add(fmt.Sprintf("controls.agent.servers[%d]", i), "%q is not https://host:port", s)
		}
	}
	return errs
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
// dotted path (seq items as name[i]).
func indexLines(n *yaml.Node, path string, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out[p] = k.Line
			indexLines(v, p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = c.Line
			indexLines(c, p, out)
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
