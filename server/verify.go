package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/shared/evidence"
)

// verifyHelp says what verify checks; it is the flag set's usage text.
const verifyHelp = `usage: mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD]

Checks an evidence bundle (format ` + evidence.Format + `) offline, with no server: the signed
checkpoint, each event's content hash and inclusion proof, each agent's seq and hash chain, and
the manifest the server signed with the same key, which lists the export's query, the number
of events and links, each agent's seq range and a SHA-256 over every entry, so a dropped first
or last entry, an emptied bundle, an added, reordered or re-typed line, or edited filters fail.
Prints the query, the counts and each agent's range, then OK or every failure with its line.
Exit 0 only if everything holds, 1 if not, 2 for bad usage. Bundles of format ` + evidence.FormatV1 + `
(no manifest) are refused: export them again.

`

// cmdVerify checks an evidence bundle offline:
//
//	mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD]
//
// It needs no server, prints what holds and every failure with its place,
// and returns an error (exit 1) unless everything holds.
func cmdVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, verifyHelp)
		fs.PrintDefaults()
	}
	pubkey := fs.String("pubkey", "", "the log's public key file (log-key.pub from the server's data dir)")
	old := fs.String("checkpoint", "", "a signed checkpoint kept from an earlier export: prove the log only grew since")
	// The bundle may come before or after the flags.
	var bundle string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		bundle, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if bundle == "" && fs.NArg() == 1 {
		bundle = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{fmt.Errorf("verify: unexpected arguments %q", fs.Args())}
	}
	if bundle == "" || *pubkey == "" {
		return usageError{fmt.Errorf("verify: usage: mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD]")}
	}
	kb, err := os.ReadFile(*pubkey)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(kb)))
	if err != nil {
		return fmt.Errorf("verify: %s is not a log public key: %w", *pubkey, err)
	}
	var opt evidence.VerifyOptions
	if *old != "" {
		if opt.Old, err = os.ReadFile(*old); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	f, err := os.Open(bundle)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	rep, err := evidence.Verify(bufio.NewReaderSize(f, 1<<20), v, opt)
	if err != nil {
		return fmt.Errorf("verify: %s: %w", bundle, err)
	}
	fmt.Fprintf(stdout, "bundle:     %s\nlog:        %s, tree size %d, root %s\n", bundle, rep.Checkpoint.Origin, rep.Checkpoint.Size, rep.Checkpoint.Root)
	if m := rep.Manifest; m != nil {
		q := url.Values{}
		for k, v := range m.Query {
			q.Set(k, v)
		}
		query := q.Encode()
		if query == "" {
			query = "(none: every event)"
		}
		fmt.Fprintf(stdout, "query:      %s\nmanifest:   signed %s, lists %d events and %d links\n",
			query, m.Created.UTC().Format(time.RFC3339), m.Events, m.Links)
	}
	fmt.Fprintf(stdout, "entries:    %d events in full, %d chain links\n", rep.Events, rep.Links)
	agents := make([]string, 0, len(rep.Agents))
	for a := range rep.Agents {
		agents = append(agents, a)
	}
	sort.Strings(agents)
	for _, a := range agents {
		r := rep.Agents[a]
		fmt.Fprintf(stdout, "agent:      %s seq %d..%d (%d entries)\n", a, r.First, r.Last, r.Entries)
	}
	if rep.OK() {
		fmt.Fprintln(stdout, "result:     OK — signatures, inclusion proofs, seq and hash chains, and the manifest (nothing missing, added or re-typed) all hold")
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintln(stdout, "FAIL:", p.String())
	}
	if rep.Truncated > 0 {
		fmt.Fprintf(stdout, "FAIL: ... and %d more problems\n", rep.Truncated)
	}
	return fmt.Errorf("verify: %d problem(s): the bundle is NOT intact", len(rep.Problems)+rep.Truncated)
}
