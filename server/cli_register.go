package main

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/app"
	"github.com/mamori/mamori/server/internal/register"
	"github.com/mamori/mamori/shared/policy"
)

// adminUsage is each admin command's usage, by command.
var adminUsage = map[string]string{
	"register": `usage:
  mamori-server register import FILE [--kind K] [client flags]   import a register CSV (UTF-8/BOM or Shift_JIS; all rows or none)
  mamori-server register export [--kind K] [--lang ja|en] [--encoding utf8|sjis] [--out FILE] [client flags]
      K: pi (個人情報管理台帳, the default), media (媒体管理台帳), approvals (持出し承認), disposals (廃棄記録)

flags:
`,
	"policy": `usage:
  mamori-server policy apply FILE [client flags]        validate a policy YAML and PUT it under its name

client flags:
`,
}

// adminFlags reach a running server with the admin token.
type adminFlags struct {
	fs        *flag.FlagSet
	server    string
	tokenFile string
	caFile    string
	dataDir   string
	kind      string
	lang      string
	encoding  string
	out       string
}

// registerAPIPaths maps --kind to the admin API's path for that register.
var registerAPIPaths = map[string]string{"pi": "register", "media": "media", "approvals": "approvals", "disposals": "disposals"}

// newAdminFlags has the client flags every admin command takes; each
// command adds its own, so that its --help lists only those.
func newAdminFlags(out io.Writer) *adminFlags {
	f := &adminFlags{fs: flag.NewFlagSet("mamori-server", flag.ContinueOnError)}
	f.fs.SetOutput(out)
	f.fs.StringVar(&f.server, "server", "", "server URL (default where the server of --data-dir listens, else https://localhost"+app.DefaultListen+")")
	f.fs.StringVar(&f.dataDir, "data-dir", "", "data directory holding admin-token and ca.pem, used when --token-file or --ca is not given (default ./mamori-data, or "+defaultServiceDataDir()+" where ./mamori-data does not exist, as on an installed server)")
	f.fs.StringVar(&f.tokenFile, "token-file", "", "file holding an admin API token (default DATA/admin-token)")
	f.fs.StringVar(&f.caFile, "ca", "", "CA certificate to trust (default DATA/ca.pem)")
	return f
}

// registerFlags adds the flags of register import and export.
func (f *adminFlags) registerFlags() {
	f.fs.StringVar(&f.kind, "kind", "pi", "register: pi, media, approvals or disposals")
	f.fs.StringVar(&f.lang, "lang", "ja", "export: header language, ja or en")
	f.fs.StringVar(&f.encoding, "encoding", "utf8", "export: utf8 (with BOM) or sjis (CP932)")
	f.fs.StringVar(&f.out, "out", "", "export: write to FILE instead of standard output")
}

// fieldErrors is a 400 that names each bad field (and row).
type fieldErrors struct {
	status string
	errs   register.ValidationError
}

func (e *fieldErrors) Error() string {
	return fmt.Sprintf("server answered %s; nothing was changed:\n  %s", e.status, strings.Join(e.errs.Lines("", register.LangEN), "\n  "))
}

// japaneseHeaders reports whether a CSV's header row is in Japanese, so
// its problems are told in the file's language.
func japaneseHeaders(b []byte) bool {
	text, err := register.DecodeText(b)
	if err != nil {
		return false
	}
	head, _, _ := bytes.Cut(bytes.TrimPrefix(text, []byte("\ufeff")), []byte("\n"))
	return !isASCII(head)
}

// wholeFileErrors says whether every error is about the file as a whole
// (the server says those in Japanese).
func wholeFileErrors(errs register.ValidationError) bool {
	for _, e := range errs {
		if e.Field != "file" {
			return false
		}
	}
	return len(errs) > 0
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// cmdAdmin runs "register ..." and "policy ..." against a running server.
func cmdAdmin(cmd string, args []string, stdout, stderr io.Writer) error {
	f := newAdminFlags(stderr)
	if cmd == "register" {
		f.registerFlags()
	}
	f.fs.Usage = func() { fmt.Fprint(stderr, adminUsage[cmd]); f.fs.PrintDefaults() }
	// Flags may come before or after the subcommand and FILE ("policy
	// --help" among them).
	pos, err := parseInterleaved(f.fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		f.fs.Usage()
		return usageError{fmt.Errorf("%s: subcommand required", cmd)}
	}
	sub, pos := pos[0], pos[1:]
	want := 1
	if cmd+" "+sub == "register export" {
		want = 0
	}
	switch cmd + " " + sub {
	case "register import", "register export", "policy apply":
	default:
		return unknownSubcommand(stderr, cmd, sub, f.fs.Usage)
	}
	if len(pos) != want {
		return usageError{fmt.Errorf("%s %s: want %d file argument(s), got %d", cmd, sub, want, len(pos))}
	}
	apiPath, ok := registerAPIPaths[f.kind]
	if cmd == "register" && !ok {
		return usageError{fmt.Errorf("--kind: %q is not pi, media, approvals or disposals", f.kind)}
	}
	// The file first: a missing or invalid file is the thing to fix, not
	// the admin token or the server.
	var (
		b []byte
		p *policy.Policy
	)
	if sub == "import" || sub == "apply" {
		if b, err = os.ReadFile(pos[0]); err != nil {
			return fmt.Errorf("%s %s: %w", cmd, sub, err)
		}
	}
	if sub == "apply" {
		if p, err = policy.Parse(b); err != nil { // the same check the server makes, with line and field
			return usageError{fmt.Errorf("policy apply: %s: %w", pos[0], err)}
		}
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	switch cmd + " " + sub {
	case "register import":
		var ans struct {
			Rows    int `json:"rows"`
			Changed int `json:"changed"`
		}
		if err := c.call("POST", "/api/v1/"+apiPath+"/import", "text/csv", b, &ans); err != nil {
			// Japanese headers are answered in Japanese; so is a whole-file
			// problem (empty, not CSV), whatever the file's language.
			if fe, ok := errors.AsType[*fieldErrors](err); ok && (japaneseHeaders(b) || wholeFileErrors(fe.errs)) {
				return likeErr(err, fmt.Errorf("register import: サーバーが %s を返しました。何も変更していません:\n  %s",
					fe.status, strings.Join(fe.errs.Lines(register.Kind(f.kind), register.LangJA), "\n  ")))
			}
			return fmt.Errorf("register import: %w", err)
		}
		fmt.Fprintf(stdout, "imported %s into %s: %d rows, %d changed\n", pos[0], f.kind, ans.Rows, ans.Changed)
	case "register export":
		q := url.Values{"lang": {f.lang}, "encoding": {f.encoding}}
		var buf bytes.Buffer
		if err := c.call("GET", "/api/v1/"+apiPath+"/export?"+q.Encode(), "", nil, &buf); err != nil {
			if fe, ok := errors.AsType[*fieldErrors](err); ok && f.lang == register.LangJA {
				return likeErr(err, fmt.Errorf("register export: サーバーが %s を返しました。何も書き出していません:\n  %s",
					fe.status, strings.Join(fe.errs.Lines(register.Kind(f.kind), register.LangJA), "\n  ")))
			}
			return fmt.Errorf("register export: %w", err)
		}
		if f.out == "" {
			_, err := stdout.Write(buf.Bytes())
			return err
		}
		if err := os.WriteFile(f.out, buf.Bytes(), 0o644); err != nil {
			return fmt.Errorf("register export: %w", err)
		}
	case "policy apply":
		var ans struct {
			Name, Version string
			Unchanged     bool
		}
		if err := c.call("PUT", "/api/v1/policies/"+url.PathEscape(p.Name), "application/yaml", b, &ans); err != nil {
			return fmt.Errorf("policy apply: %w", err)
		}
		if ans.Unchanged {
			fmt.Fprintf(stdout, "policy %s unchanged, version %s (identical to the stored policy: nothing written)\n", ans.Name, ans.Version)
		} else {
			fmt.Fprintf(stdout, "policy %s applied, version %s\n", ans.Name, ans.Version)
		}
		if p.Controls.AllOff() {
			fmt.Fprintf(stderr, "warning: policy %s turns every control off: the PCs it applies to check and record nothing, access to personal-data folders included\n", ans.Name)
		}
	}
	return nil
}

// likeErr is msg, a usage error where the server's answer err was one (a
// 400), so that a message told anew keeps its exit code.
func likeErr(err, msg error) error {
	var ue usageError
	if errors.As(err, &ue) {
		return usageError{msg}
	}
	return msg
}

// adminClient is an HTTPS client with the admin token.
type adminClient struct {
	base, token string
	c           *http.Client
}

func (f *adminFlags) client() (*adminClient, error) {
	if f.dataDir == "" {
		f.dataDir = "mamori-data"
		if _, err := os.Stat(f.dataDir); errors.Is(err, fs.ErrNotExist) {
			f.dataDir = defaultServiceDataDir()
		}
	}
	if f.server == "" {
		f.server = cmp.Or(serverOf(f.dataDir), "https://localhost"+app.DefaultListen)
	}
	// The URL first: a bad one is a usage error, whatever the files hold.
	u, err := url.Parse(f.server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, usageError{fmt.Errorf("--server: %q is not an https URL", f.server)}
	}
	if u.User != nil {
		return nil, usageError{fmt.Errorf("--server: %q carries a user name or password, which the server does not take: give https://HOST:PORT and the admin token (--token-file or --data-dir)", u.Redacted())}
	}
	tf, cf := f.tokenFile, f.caFile
	if tf == "" {
		tf = filepath.Join(f.dataDir, app.FileAdminToken)
	}
	if cf == "" {
		cf = filepath.Join(f.dataDir, app.FileCA)
	}
	tok, err := os.ReadFile(tf)
	if err != nil {
		return nil, fmt.Errorf("admin token: %w (give --token-file or --data-dir)", err)
	}
	caPEM, err := os.ReadFile(cf)
	if err != nil {
		return nil, fmt.Errorf("CA: %w (give --ca or --data-dir)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA: %s holds no PEM certificate", cf)
	}
	return &adminClient{base: strings.TrimRight(f.server, "/"), token: strings.TrimSpace(string(tok)),
		c: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}, nil
}

// call sends body and decodes a JSON answer into out (or copies it into a
// *bytes.Buffer). An error answer becomes an error listing every field error.
func (a *adminClient) call(method, path, ctype string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return a.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		err := answerError(resp.Status, raw)
		if resp.StatusCode == http.StatusBadRequest {
			// The server refused the input: a usage error, as if the CLI
			// had caught it.
			return usageError{err}
		}
		return err
	}
	if buf, ok := out.(*bytes.Buffer); ok {
		buf.Write(raw)
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	return nil
}

// answerError is the error of a server's error answer: its message, or
// each field error.
func answerError(status string, raw []byte) error {
	var e struct {
		Error  string `json:"error"`
		Errors []struct {
			Row     int    `json:"row"`
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		return fmt.Errorf("server answered %s", status)
	}
	if len(e.Errors) == 0 {
		return fmt.Errorf("server answered %s: %s", status, e.Error)
	}
	fe := &fieldErrors{status: status}
	for _, x := range e.Errors {
		fe.errs = append(fe.errs, register.FieldError{Row: x.Row, Field: x.Field, Msg: x.Message})
	}
	return fe
}

// parseInterleaved parses args with flags before, between or after the
// positional arguments, and returns the positional ones in order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// unreachable says what to do about a failed request: a server that
// answered with a certificate for other names, or from another CA, is
// running and reachable, and the fix is the URL or --ca, not the firewall.
func (a *adminClient) unreachable(err error) error {
	var ca x509.UnknownAuthorityError
	if errors.As(err, &ca) {
		return fmt.Errorf("the server at %s answered, but its certificate is not from the CA in --ca (default DATA/ca.pem): %w\n  give --ca the ca.pem of that server's data directory, or --server the server you meant", a.base, err)
	}
	if herr, ok := hostnameHint(a.base, err); ok {
		return herr
	}
	return fmt.Errorf("cannot reach the server at %s: %w\n  check that mamori-server serve runs there (systemctl status mamori-server, or sc query MamoriServer),\n  that --server names its address and port, and that no firewall blocks it", a.base, err)
}

// hostnameHint turns a TLS host name mismatch (x509.HostnameError) into
// what to do about it: the server answered with a certificate issued for
// other names (its --hostname list), so --server should use one of them.
// It reports whether err was such a mismatch.
func hostnameHint(base string, err error) (error, bool) {
	var host x509.HostnameError
	if ua := (x509.UnknownAuthorityError{}); errors.As(err, &ua) {
		return fmt.Errorf("the server at %s answered with a certificate of Mamori's own CA, which this machine does not trust: give --ca with the site's ca.pem (a copy of DATA/ca.pem; check its SHA-256 against the ca-hash the server prints) (%w)", base, err), true
	}
	if !errors.As(err, &host) || host.Certificate == nil {
		return err, false
	}
	names := append(append([]string{}, host.Certificate.DNSNames...), ipStrings(host.Certificate.IPAddresses)...)
	return fmt.Errorf("the server at %s answered, but its certificate is for %s, not %q: give --server with the host name the certificate was issued for (the server's --hostname list, e.g. https://%s:PORT),\n  or add %q to the server's --hostname and restart it (%w)", base,
		strings.Join(names, ", "), host.Host, firstOr(names, "NAME"), host.Host, err), true
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}
