package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/mamori/mamori/server/internal/witness"
)

const witnessHelp = `usage: mamori-server witness --server URL --token T --pubkey FILE --state DIR [--once]
       [--interval 1m] [--ca FILE] [--webhook URL]

Run by an auditor on another machine: fetches the server's signed checkpoint on a schedule,
checks that it is a consistent extension (tlog consistency proof) of the last one kept in DIR,
keeps it, and raises an alarm (log line, DIR/alarm.json, optional webhook POST) on any fork or
rollback; the alarm stays until removed by hand. When every check has failed for 30 minutes
(or 5 intervals, if longer) it logs an error and POSTs a "cannot_check" notice to the webhook, and
"checking_again" once a check succeeds. "verify --checkpoint DIR" checks bundles against the
checkpoints kept here.
Exit codes: 0 every new checkpoint extends the kept ones; 1 fork or rollback; 2 could not check.

`

// cannotCheck marks a failure to check at all (exit code 2).
type cannotCheck struct{ error }

// cmdWitness runs the witness until interrupted, or once with --once.
func cmdWitness(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("witness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, witnessHelp)
		fs.PrintDefaults()
	}
	server := fs.String("server", "", "the server's URL, https://host:8443")
	token := fs.String("token", "", "a read-only (auditor) API token")
	pubkey := fs.String("pubkey", "", "the log's public key file (log-key.pub)")
	stateDir := fs.String("state", "", "directory that keeps the checkpoints seen")
	once := fs.Bool("once", false, "check once and exit")
	interval := fs.Duration("interval", time.Minute, "time between checks")
	caFile := fs.String("ca", "", "CA certificate (ca.pem) the server's TLS certificate chains to; default: the system's roots")
	webhook := fs.String("webhook", "", "URL to POST a JSON alarm to on a fork or rollback, or when checks keep failing")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 || *server == "" || *token == "" || *pubkey == "" || *stateDir == "" {
		return usageError{errors.New("witness: usage: mamori-server witness --server URL --token T --pubkey FILE --state DIR [--once]")}
	}
	if u, err := url.Parse(*server); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return usageError{fmt.Errorf("witness: --server %q: want https://host:port", *server)}
	}
	if u, _ := url.Parse(*server); u.User != nil {
		return usageError{fmt.Errorf("witness: --server %q carries a user name or password, which the server does not take: give https://host:port and --token", u.Redacted())}
	}
	if *interval < time.Second {
		return usageError{fmt.Errorf("witness: --interval %s: at least 1s", *interval)}
	}
	kb, err := os.ReadFile(*pubkey)
	if err != nil {
		return usageError{fmt.Errorf("witness: %w", err)}
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(kb)))
	if err != nil {
		return usageError{fmt.Errorf("witness: %s is not a log public key: %w", *pubkey, err)}
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return usageError{fmt.Errorf("witness: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return usageError{fmt.Errorf("witness: %s holds no PEM certificate", *caFile)}
		}
		tlsCfg.RootCAs = pool
	}
	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		return usageError{fmt.Errorf("witness: %w", err)}
	}
	w := &witness.Witness{Server: *server, Token: *token, Verifier: v, StateDir: *stateDir, Webhook: *webhook,
		Client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}},
		Log:    zerolog.New(stderr).With().Timestamp().Logger()}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report := func(res witness.Result, err error) {
		if err != nil {
			err, _ = hostnameHint(*server, err)
			w.Log.Warn().Err(err).Msg("witness: could not check; trying again")
			return
		}
		fmt.Fprintf(stdout, "%s consistent: kept %d, server %d\n", time.Now().UTC().Format(time.RFC3339), res.Kept, res.Seen)
	}
	if !*once {
		w.SilentAfter = max(30*time.Minute, 5**interval)
		return w.Watch(ctx, *interval, report)
	}
	res, err := w.Check(ctx)
	switch {
	case errors.Is(err, witness.ErrFork):
		return err
	case err != nil:
		if herr, ok := hostnameHint(*server, err); ok {
			err = fmt.Errorf("witness: %w", herr)
		}
		return cannotCheck{err}
	}
	report(res, nil)
	return nil
}
