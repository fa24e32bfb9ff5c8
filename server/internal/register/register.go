// Package register keeps the management registers of JIS Q 15001 A.3.3.1
// (2023: J.3.1.1) in etcd with a full change history: 個人情報管理台帳
// (personal-information register), 媒体管理台帳 (media register), 持出し承認
// (carry-out approvals) and 廃棄記録 (disposal records). It validates entries
// with errors that name the field, imports and exports every register as CSV
// that round-trips with Excel, and compiles each agent's
// effective policy from its policy pack and the registers.
package register

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Kind names one register; it is also the etcd directory and the API path.
type Kind string

// The four registers.
const (
	KindPI        Kind = "pi"        // 個人情報管理台帳
	KindMedia     Kind = "media"     // 媒体管理台帳
	KindApprovals Kind = "approvals" // 持出し承認
	KindDisposals Kind = "disposals" // 廃棄記録
)

// Kinds lists every register.
var Kinds = []Kind{KindPI, KindMedia, KindApprovals, KindDisposals}

// Statuses. Every register knows active and retired ("deleted" entries are
// kept as retired); media and approvals have more.
const (
	StatusActive    = "active"
	StatusRetired   = "retired"
	StatusLost      = "lost"
	StatusDisposed  = "disposed"
	StatusRequested = "requested"
	StatusApproved  = "approved"
	StatusDenied    = "denied"
	StatusReturned  = "returned"
)

// Errors callers map to HTTP statuses.
var (
	// ErrNotFound: no entry with that id.
	ErrNotFound = errors.New("register: not found")
	// ErrConflict: the entry changed since the given revision (or exists already); nothing was written.
	ErrConflict = errors.New("register: conflict")
	// ErrInvalid is wrapped by every validation error; nothing was written.
	ErrInvalid = errors.New("register: invalid")
)

// Meta is common to every entry.
type Meta struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Revision is the etcd mod revision of the entry as read; send it back
	// (or as If-Match) to update. It is not stored in the value.
	Revision  int64     `json:"revision,omitempty"`
	Version   int       `json:"version,omitempty"` // number of changes so far
	Updated   time.Time `json:"updated,omitzero"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

func (m *Meta) meta() *Meta { return m }

// Location is one storage location of personal data: a PC or server
// (hostname as the agent reports it) and a folder on it.
type Location struct {
	Host   string `json:"host"`
	Folder string `json:"folder"`
}

// PIEntry is one row of the 個人情報管理台帳.
type PIEntry struct {
	Meta
	Name           string     `json:"name"`                      // 個人情報の名称
	Contents       string     `json:"contents,omitempty"`        // 項目 (data items)
	Purpose        string     `json:"purpose"`                   // 利用目的
	RecordCount    int        `json:"record_count"`              // 件数
	Sensitive      bool       `json:"sensitive"`                 // 要配慮個人情報
	Medium         string     `json:"medium"`                    // paper | electronic | both
	Locations      []Location `json:"locations,omitempty"`       // 保管場所: folders the agents watch
	PaperLocations []string   `json:"paper_locations,omitempty"` // 紙の保管場所: a store room, a cabinet
	Owner          string     `json:"owner"`                     // 管理責任者
	Department     string     `json:"department"`                // 部署
	Access         []string   `json:"access,omitempty"`          // アクセス権者
	Acquisition    string     `json:"acquisition,omitempty"`     // 取得方法
	Outsourcee     string     `json:"outsourcee,omitempty"`      // 委託先
	Retention      string     `json:"retention"`                 // 保管期間: "5y", "18m" or "indefinite"
	DisposalMethod string     `json:"disposal_method,omitempty"`
	RiskNotes      string     `json:"risk_notes,omitempty"`
	LastReviewed   string     `json:"last_reviewed,omitempty"` // YYYY-MM-DD
}

// MediaEntry is one row of the 媒体管理台帳.
type MediaEntry struct {
	Meta
	Registered string `json:"registered"` // YYYY-MM-DD
	Product    string `json:"product"`
	Serial     string `json:"serial"`
	VendorID   string `json:"vendor_id,omitempty"`  // USB idVendor, 4 hex digits
	ProductID  string `json:"product_id,omitempty"` // USB idProduct, 4 hex digits
	Owner      string `json:"owner"`
	Encrypted  bool   `json:"encrypted"`
}

// Approval is one 持出し承認: a device may be used on a host in a window.
type Approval struct {
	Meta
	Requester   string    `json:"requester"`
	Serial      string    `json:"serial"`
	Host        string    `json:"host"`
	Purpose     string    `json:"purpose"`
	RegisterIDs []string  `json:"register_ids,omitempty"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Approver    string    `json:"approver,omitempty"`
	Decided     time.Time `json:"decided,omitzero"`
	Result      string    `json:"result,omitempty"`  // files written, returned, ...
	Comment     string    `json:"comment,omitempty"` // the approver's, with the decision
	Returned    time.Time `json:"returned,omitzero"`
}

// Disposal is one 廃棄記録.
type Disposal struct {
	Meta
	Date        string `json:"date"` // YYYY-MM-DD
	Item        string `json:"item"`
	RegisterID  string `json:"register_id,omitempty"`
	Method      string `json:"method"`
	Responsible string `json:"responsible"`
	Certificate string `json:"certificate,omitempty"` // 廃棄証明書 reference
}

// Entry is any register entry.
type Entry interface {
	meta() *Meta
	kind() Kind
	validate(v *validator)
}

func (*PIEntry) kind() Kind    { return KindPI }
func (*MediaEntry) kind() Kind { return KindMedia }
func (*Approval) kind() Kind   { return KindApprovals }
func (*Disposal) kind() Kind   { return KindDisposals }

// NewEntry returns an empty entry of kind k, or nil for an unknown kind.
func NewEntry(k Kind) Entry {
	switch k {
	case KindPI:
		return &PIEntry{}
	case KindMedia:
		return &MediaEntry{}
	case KindApprovals:
		return &Approval{}
	case KindDisposals:
		return &Disposal{}
	}
	return nil
}

// FieldError is one problem with one field; Row is the spreadsheet row of
// an imported CSV (the header is row 1, as Excel numbers it), else 0.
type FieldError struct {
	Row   int    `json:"row,omitempty"`
	Field string `json:"field"`
	Msg   string `json:"message"`
}

func (e FieldError) Error() string {
	if e.Row > 0 {
		return fmt.Sprintf("row %d: %s: %s", e.Row, e.Field, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

// ValidationError lists every problem found; it wraps ErrInvalid.
type ValidationError []FieldError

func (es ValidationError) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return "register: " + strings.Join(s, "; ")
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (es ValidationError) Unwrap() error { return ErrInvalid }

type validator struct {
	now  time.Time
	errs ValidationError
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Field length limit: a register cell, not a document.
const maxField = 2000

func (v *validator) text(field, s string, required bool) {
	switch {
	case required && strings.TrimSpace(s) == "":
		v.add(field, "required")
	case len(s) > maxField:
		v.add(field, "longer than %d bytes", maxField)
	}
}

func (v *validator) oneOf(field, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	v.add(field, "%q is not one of %s", s, strings.Join(allowed, ", "))
}

// date checks a YYYY-MM-DD date that may not lie in the future.
func (v *validator) date(field, s string, required bool) {
	if s == "" {
		if required {
			v.add(field, "required")
		}
		return
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		v.add(field, "%q is not a date (YYYY-MM-DD, or 2026/4/1 and 2026年4月1日 in a CSV or form)", s)
		return
	}
	if d.After(v.now) {
		v.add(field, "%s is in the future", s)
	}
}

var (
	idRE        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	serialRE    = regexp.MustCompile(`^[A-Za-z0-9._:-]{4,64}$`)
	usbIDRE     = regexp.MustCompile(`^[0-9a-fA-F]{4}$`)
	hostRE      = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$`)
	retentionRE = regexp.MustCompile(`^[1-9][0-9]{0,2}[ym]$`)
)

// ValidID reports whether s can be an entry id (a register or media number).
func ValidID(s string) bool { return idRE.MatchString(s) }

func (v *validator) common(m *Meta) {
	switch {
	case m.ID == "":
		// Only an import gets here: Create numbers a new entry itself,
		// but a row without its number could not be matched next time.
		v.add("id", "an id is needed on every row: give a new row a number not used yet (the API and the form number new entries)")
	case !idRE.MatchString(m.ID):
		v.add("id", "%q is not a valid id (letters, digits, . _ @ -; at most 64)", m.ID)
	case m.ID == "import" || m.ID == "export":
		// Those are each register's CSV paths in the API and the web UI.
		v.add("id", "%q is reserved for CSV import and export", m.ID)
	}
}

func (e *PIEntry) validate(v *validator) {
	v.common(&e.Meta)
	v.oneOf("status", e.Status, StatusActive, StatusRetired)
	v.text("name", e.Name, true)
	v.text("contents", e.Contents, false)
	v.text("purpose", e.Purpose, true)
	if e.RecordCount < 0 {
		v.add("record_count", "must not be negative")
	}
	v.oneOf("medium", e.Medium, "paper", "electronic", "both")
	if (e.Medium == "electronic" || e.Medium == "both") && len(e.Locations) == 0 {
		v.add("locations", "required for electronic data (host and folder)")
	}
	for i, l := range e.Locations {
		f := fmt.Sprintf("locations[%d]", i)
		if !hostRE.MatchString(l.Host) {
			v.add(f+".host", "%q is not a hostname", l.Host)
		}
		if !isAbs(l.Folder) {
			v.add(f+".folder", "%q is not an absolute folder path", l.Folder)
		}
	}
	for i, l := range e.PaperLocations {
		v.text(fmt.Sprintf("paper_locations[%d]", i), l, true)
	}
	v.text("owner", e.Owner, true)
	v.text("department", e.Department, true)
	for i, a := range e.Access {
		v.text(fmt.Sprintf("access[%d]", i), a, true)
	}
	v.text("acquisition", e.Acquisition, false)
	v.text("outsourcee", e.Outsourcee, false)
	switch {
	case e.Retention == "":
		v.add("retention", "required (e.g. 5y, 18m or indefinite)")
	case e.Retention == "indefinite":
	case !retentionRE.MatchString(e.Retention):
		v.add("retention", "%q is not a period such as 5y, 18m or indefinite (5年, 18か月 or 無期限 in a CSV or form)", e.Retention)
	}
	// Data kept for a limited time must say how it is disposed of.
	if retentionRE.MatchString(e.Retention) && strings.TrimSpace(e.DisposalMethod) == "" {
		v.add("disposal_method", "required when retention is limited (%s)", e.Retention)
	}
	v.text("disposal_method", e.DisposalMethod, false)
	v.text("risk_notes", e.RiskNotes, false)
	v.date("last_reviewed", e.LastReviewed, false)
}

func (e *MediaEntry) validate(v *validator) {
	v.common(&e.Meta)
	v.oneOf("status", e.Status, StatusActive, StatusLost, StatusDisposed, StatusRetired)
	v.date("registered", e.Registered, true)
	v.text("product", e.Product, true)
	if !serialRE.MatchString(e.Serial) {
		v.add("serial", "%q is not a serial number (4..64 of A-Z a-z 0-9 . _ : -)", e.Serial)
	}
	if e.VendorID != "" && !usbIDRE.MatchString(e.VendorID) {
		v.add("vendor_id", "%q is not 4 hex digits", e.VendorID)
	}
	if e.ProductID != "" && !usbIDRE.MatchString(e.ProductID) {
		v.add("product_id", "%q is not 4 hex digits", e.ProductID)
	}
	v.text("owner", e.Owner, true)
}

func (e *Approval) validate(v *validator) {
	v.common(&e.Meta)
	v.oneOf("status", e.Status, StatusRequested, StatusApproved, StatusDenied, StatusReturned, StatusRetired)
	v.text("requester", e.Requester, true)
	if !serialRE.MatchString(e.Serial) {
		v.add("serial", "%q is not a serial number (4..64 of A-Z a-z 0-9 . _ : -)", e.Serial)
	}
	if !hostRE.MatchString(e.Host) {
		v.add("host", "%q is not a hostname", e.Host)
	}
	v.text("purpose", e.Purpose, true)
	for i, id := range e.RegisterIDs {
		if !idRE.MatchString(id) {
			v.add(fmt.Sprintf("register_ids[%d]", i), "%q is not a register id", id)
		}
	}
	switch {
	case e.From.IsZero():
		v.add("from", "required (RFC 3339 time)")
	case e.To.IsZero():
		v.add("to", "required (RFC 3339 time)")
	case !e.To.After(e.From):
		v.add("to", "must be after from")
	}
	if (e.Status == StatusApproved || e.Status == StatusDenied || e.Status == StatusReturned) && e.Approver == "" {
		v.add("approver", "required once %s", e.Status)
	}
	v.text("result", e.Result, false)
	v.text("comment", e.Comment, false)
}

func (e *Disposal) validate(v *validator) {
	v.common(&e.Meta)
	v.oneOf("status", e.Status, StatusActive, StatusRetired)
	v.date("date", e.Date, true)
	v.text("item", e.Item, true)
	if e.RegisterID != "" && !idRE.MatchString(e.RegisterID) {
		v.add("register_id", "%q is not a register id", e.RegisterID)
	}
	v.text("method", e.Method, true)
	v.text("responsible", e.Responsible, true)
	v.text("certificate", e.Certificate, false)
}

// Validate checks e as of now; the error is a ValidationError.
func Validate(e Entry, now time.Time) error {
	v := &validator{now: now}
	e.validate(v)
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

// isAbs accepts absolute paths of any OS the agent runs on.
func isAbs(p string) bool {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\\`) {
		return true
	}
	return len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/') &&
		('A' <= p[0] && p[0] <= 'Z' || 'a' <= p[0] && p[0] <= 'z')
}

// MetaOf returns the entry's common fields, for callers outside the package
// (the API sets the id from the URL and reads the revision).
func MetaOf(e Entry) *Meta { return e.meta() }
