package main

import (
	"cmp"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/text/width"

	"github.com/mamori/mamori/server/internal/compliance"
	"github.com/mamori/mamori/shared/labels"
)

const complianceUsage = `usage: mamori-server compliance [--department D] [--agent ID] [--status fail|unknown|pass|off] [--lang ja|en]

Prints each PC's status per control from a running server, as the 端末 page shows it, then why each
failing or unknown control is so. Exit 0; the figures are in GET /api/v1/compliance as JSON.

flags:
`

// cmdCompliance runs "compliance": the fleet's status on the server's
// terminal, for an admin without a browser there.
func cmdCompliance(args []string, stdout, stderr io.Writer) error {
	f := newAdminFlags(stderr)
	dept := f.fs.String("department", "", "only this department's PCs")
	agent := f.fs.String("agent", "", "only this agent (id)")
	status := f.fs.String("status", "", "only PCs with a control in this status: fail, unknown, pass or off")
	lang := f.fs.String("lang", "ja", "ja or en")
	f.fs.Usage = func() { fmt.Fprint(stderr, complianceUsage); f.fs.PrintDefaults() }
	pos, err := parseInterleaved(f.fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError{fmt.Errorf("compliance: unexpected argument %q", pos[0])}
	case *lang != labels.JA && *lang != labels.EN:
		return usageError{fmt.Errorf("compliance: --lang %q: want ja or en", *lang)}
	}
	q := url.Values{}
	for k, v := range map[string]string{"department": *dept, "agent": *agent, "status": *status} {
		if v != "" {
			q.Set(k, v)
		}
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	var ans struct {
		Hosts []compliance.Host `json:"hosts"`
	}
	if err := c.call("GET", "/api/v1/compliance?"+q.Encode(), "", nil, &ans); err != nil {
		return err
	}
	writeCompliance(stdout, ans.Hosts, *lang, time.Now())
	return nil
}

// writeCompliance prints hosts as a table and the reasons under it.
func writeCompliance(w io.Writer, hosts []compliance.Host, lang string, now time.Time) {
	ja := lang == labels.JA
	if len(hosts) == 0 {
		fmt.Fprintln(w, pick(ja, "該当する端末はありません", "no PC matches"))
		return
	}
	head := []string{pick(ja, "端末", "PC"), pick(ja, "部署", "Department"), pick(ja, "最終受信 (JST)", "Last seen (JST)")}
	for _, c := range compliance.Controls {
		head = append(head, labels.Of(labels.Control, lang, c))
	}
	rows := [][]string{head}
	var why []string
	for _, h := range hosts {
		seen := pick(ja, "未受信", "never")
		if h.LastSeen != nil {
			seen = h.LastSeen.In(jst).Format("2006-01-02 15:04")
		}
		row := []string{cmp.Or(h.Hostname, h.Agent), h.Department, seen}
		for _, c := range compliance.Controls {
			st, ok := h.Controls[c]
			if !ok {
				row = append(row, "-")
				continue
			}
			row = append(row, labels.Of(labels.Verdict, lang, string(st.Status)))
			if st.Status == compliance.Fail || st.Status == compliance.Unknown {
				reason := pick(ja, st.ReasonJA, st.ReasonEN)
				why = append(why, fmt.Sprintf("  %s %s (%s): %s", cmp.Or(h.Hostname, h.Agent), labels.Of(labels.Control, lang, c),
					labels.Of(labels.Verdict, lang, string(st.Status)), cmp.Or(reason, st.Reason)))
			}
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(head))
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], cellWidth(cell))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, cell := range r {
			b.WriteString(cell)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-cellWidth(cell)+2))
			}
		}
		fmt.Fprintln(w, b.String())
	}
	if len(why) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, pick(ja, "違反・不明の理由:", "Why controls fail or are unknown:"))
		for _, l := range why {
			fmt.Fprintln(w, l)
		}
	}
}

// cellWidth is how many columns a terminal gives s: Japanese characters
// take two, so a table of PC names and 部署 lines up.
func cellWidth(s string) int {
	n := 0
	for _, r := range s {
		switch width.LookupRune(r).Kind() {
		case width.EastAsianWide, width.EastAsianFullwidth:
			n += 2
		default:
			if utf8.ValidRune(r) {
				n++
			}
		}
	}
	return n
}

func pick(ja bool, j, e string) string {
	if ja {
		return j
	}
	return e
}
