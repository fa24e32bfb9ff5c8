package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

const exportUsage = `usage: mamori-server export --out FILE [--agent ID|PC] [--from T] [--to T] [--control C] [--type T]
                           [--user U] [--object-prefix P] [--register-id ID] [--format bundle|csv] [--since N]

Fetches the events a query selects from a running server into FILE: an evidence bundle (default) to
check offline with "mamori-server verify FILE --pubkey log-key.pub", or an Excel CSV (--format csv).
Auditors give --token-file with their own API token (role auditor) and --ca with the site's ca.pem;
times are RFC 3339 or YYYY-MM-DD (midnight JST; --to is the first day not included). The export is recorded on the server. FILE is written only whole.

flags:
`

// cmdExport runs "export": GET /api/v1/export into a file, streamed (an
// export of a year is large), so auditors need neither curl nor the web UI.
func cmdExport(args []string, stdout, stderr io.Writer) error {
	f := newAdminFlags(stderr)
	out := f.fs.String("out", "", "file to write (required; never overwritten half-way)")
	format := f.fs.String("format", "bundle", "bundle (to verify offline) or csv")
	lang := f.fs.String("lang", "ja", "csv: header language, ja or en")
	since := f.fs.String("since", "", "bundle: add a consistency proof from the checkpoint of this size (one kept earlier)")
	params := map[string]*string{}
	for _, p := range []struct{ flag, param, help string }{
		{"agent", "agent", "agent id or PC name"},
		{"from", "from", "first event time (RFC 3339, or YYYY-MM-DD in JST)"},
		{"to", "to", "end of the time range"},
		{"control", "control", "control (fileaccess, media, ...)"},
		{"type", "type", "event type (file.modified, ...)"},
		{"user", "user", "user"},
		{"object-prefix", "object_prefix", "object path prefix (a folder)"},
		{"register-id", "register_id", "register entry id (PI-...)"},
	} {
		params[p.param] = f.fs.String(p.flag, "", p.help)
	}
	f.fs.Usage = func() { fmt.Fprint(stderr, exportUsage); f.fs.PrintDefaults() }
	pos, err := parseInterleaved(f.fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError{fmt.Errorf("export: unexpected argument %q (the file is --out FILE)", pos[0])}
	case *out == "":
		return usageError{errors.New("export: --out FILE is required")}
	case *format != "bundle" && *format != "csv":
		return usageError{fmt.Errorf("export: --format %q: want bundle or csv", *format)}
	}
	q := url.Values{"format": {*format}}
	if *format == "csv" {
		q.Set("lang", *lang)
	}
	if *since != "" {
		q.Set("since", *since)
	}
	for k, v := range params {
		if *v == "" {
			continue
		}
		// A day (YYYY-MM-DD) starts at midnight in Japan; the API takes
		// RFC 3339 only.
		if (k == "from" || k == "to") && len(*v) == len(time.DateOnly) {
			d, err := time.ParseInLocation(time.DateOnly, *v, jst)
			if err != nil {
				return usageError{fmt.Errorf("export: --%s %q: want YYYY-MM-DD or an RFC 3339 time", k, *v)}
			}
			*v = d.Format(time.RFC3339)
		}
		q.Set(k, *v)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, c.base+"/api/v1/export?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.c.Do(req)
	if err != nil {
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		err := answerError(resp.Status, raw)
		if resp.StatusCode == http.StatusBadRequest {
			return usageError{err}
		}
		return err
	}
	// Into a temporary file beside FILE, renamed when whole: a cut-off
	// download never sits where the auditor expects the evidence.
	tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".part-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("export: reading the answer after %d bytes: %w (nothing written to %s)", n, err, *out)
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes, %s)\n", *out, n, *format)
	if *format == "bundle" {
		fmt.Fprintf(stdout, "check it offline: mamori-server verify %s --pubkey log-key.pub (the log key handed over out of band)\n", *out)
	}
	return nil
}
