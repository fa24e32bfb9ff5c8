// Package service is the mamori-agent command line and its service
// lifecycle: enroll, run (foreground or as the OS service), install,
// uninstall, start, stop and status.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/uplink"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

const usage = `usage: mamori-agent COMMAND [flags]      (mamori-agent COMMAND --help lists its flags)

commands:
  enroll     --server URL --token T --ca-hash sha256:HEX [--department D] [--proxy URL]
             enroll this PC with the server now
  configure  --server URL[,URL...] --ca-hash sha256:HEX [--token T] [--department D] [--proxy URL] [--env-file FILE]
             write the installed config (what the MSI and packages do); the service enrolls itself at start
  run        [--log-level info]   run the agent in the foreground (the service runs this)
  install    install the service: MamoriAgent (Windows service), mamori-agent (systemd unit, launchd job)
  uninstall  remove the service
  start      start the service
  stop       stop the service
  status     print enrollment, server, running, spool, controls and the log file as JSON
  version    print the version, commit and build date
  help       print this

Every command but version and help takes --state-dir DIR (default: ` + "%s" + `).
`

// DefaultStateDir is where the agent keeps its identity, spool and policy.
func DefaultStateDir() string {
	switch runtime.GOOS {
	case "windows":
		pd := os.Getenv("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return filepath.Join(pd, "Mamori")
	case "darwin":
		return "/Library/Application Support/Mamori"
	default:
		return "/var/lib/mamori-agent"
	}
}

type usageError struct{ error }

// Main runs the command line and returns the process exit code.
// commandUsage is cmd's line of the usage text ("" for no such command).
func commandUsage(cmd string) string {
	for line := range strings.SplitSeq(usage, "\n") {
		if rest, ok := strings.CutPrefix(line, "  "+cmd+" "); ok {
			// "run        [--log-level info]   run the agent ...": the flags
			// only; a command without flags of its own has its description.
			rest = strings.TrimSpace(rest)
			if !strings.HasPrefix(rest, "-") && !strings.HasPrefix(rest, "[") {
				return cmd + " [--state-dir DIR]"
			}
			flags, _, _ := strings.Cut(rest, "   ")
			return cmd + " " + flags + " [--state-dir DIR]"
		}
	}
	return ""
}

func Main(args []string, factories []controls.Factory, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, DefaultStateDir())
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "enroll":
		err = cmdEnroll(rest, stdout, stderr)
	case "configure":
		err = cmdConfigure(rest, stdout, stderr)
	case "run":
		err = cmdRun(rest, factories, stderr)
	case "status":
		err = cmdStatus(rest, stdout, stderr)
	case "install", "uninstall", "start", "stop":
		err = cmdControl(cmd, rest, stdout, stderr)
	case "version", "--version", "-version":
		fs := flag.NewFlagSet("mamori-agent version", flag.ContinueOnError)
		if err = parse(fs, rest); err == nil {
			fmt.Fprintln(stdout, "mamori-agent", Build.String())
			return exitOK
		}
	case "help", "-h", "--help":
		fmt.Fprintf(stdout, usage, DefaultStateDir())
		return exitOK
	default:
		err = usageError{fmt.Errorf("unknown command %q", cmd)}
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		if line := commandUsage(cmd); line != "" {
			// The command's own line, not all of them: the problem is here.
			fmt.Fprintf(stderr, "mamori-agent %s: %v\nusage: mamori-agent %s\n(mamori-agent %s --help lists its flags)\n", cmd, ue.error, line, cmd)
		} else {
			fmt.Fprintf(stderr, "mamori-agent %s: %v\n"+usage, cmd, ue.error, DefaultStateDir())
		}
		return exitUsage
	default:
		fmt.Fprintf(stderr, "mamori-agent %s: %v\n", cmd, err)
		return exitError
	}
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("mamori-agent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("state-dir", DefaultStateDir(), "state directory")
	return fs, dir
}

// parse parses a command's flags. The flag package stays quiet: --help
// prints the command's flags here, and any other error is a usageError,
// which Main prints once with the usage (not the flag package's usage too).
// A --server flag is checked here for every command that has one.
func parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(out, "usage: %s [flags]\n\nflags:\n", fs.Name())
			fs.PrintDefaults()
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if f := fs.Lookup("server"); f != nil {
		if err := checkNoUserInfo(f.Value.String()); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// checkNoUserInfo refuses server URLs with a user name or password
// (https://user:pw@host): the agent authenticates with its token and
// certificate, and would otherwise drop them without a word.
func checkNoUserInfo(servers string) error {
	for _, s := range strings.Split(servers, ",") {
		s = strings.TrimSpace(s)
		if u, err := url.Parse(s); err == nil && u.User != nil {
			return fmt.Errorf("--server: %q carries a user name or password: give https://host:port alone (the agent authenticates with its token and certificate)", u.Redacted())
		}
	}
	return nil
}

func cmdEnroll(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("enroll", stderr)
	server := fs.String("server", "", "server URL, https://host:port (required)")
	token := fs.String("token", "", "enrollment token (required)")
	caHash := fs.String("ca-hash", "", "sha256:<hex> fingerprint of the server's CA (required)")
	dept := fs.String("department", "", "department recorded for this PC")
	proxy := fs.String("proxy", "", "HTTP proxy URL (default: the system's)")
	if err := parse(fs, args); err != nil {
		return err
	}
	trimFlags(server, token, caHash, dept, proxy)
	switch {
	case *server == "":
		return usageError{errors.New("--server is required")}
	case *token == "":
		return usageError{errors.New("--token is required")}
	case *caHash == "":
		return usageError{errors.New("--ca-hash is required")}
	}
	if strings.Contains(*server, ",") {
		return usageError{errors.New("--server takes one URL here; for several servers run mamori-agent configure --server URL1,URL2 --token T --ca-hash H, then start the service (or mamori-agent run): it enrolls with the first that answers and keeps the list")}
	}
	if _, err := uplink.CheckServerURL(*server); err != nil {
		return usageError{err}
	}
	if _, err := uplink.ParseCAHash(*caHash); err != nil {
		return usageError{err}
	}
	if *proxy != "" {
		if _, err := uplink.ParseProxy(*proxy); err != nil {
			return usageError{err}
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	st, err := uplink.Enroll(ctx, uplink.EnrollOptions{Server: *server, Token: *token, CAHash: *caHash,
		StateDir: *dir, Department: *dept, Proxy: *proxy})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled as %s with %s; state in %s\n", st.AgentID, st.Server, *dir)
	// A token an earlier configure stored is a secret with a use count the
	// enrolled PC no longer needs.
	if err := uplink.ForgetToken(*dir); err != nil {
		fmt.Fprintf(stderr, "mamori-agent enroll: enrolled, but the token could not be removed from %s: %v\n", uplink.FileConfig, err)
	}
	return nil
}

// trimFlags drops the white space around pasted values (a Windows file's
// "\r", spaces): a token with it would be refused with 401.
func trimFlags(vals ...*string) {
	for _, v := range vals {
		*v = strings.TrimSpace(*v)
	}
}

func cmdRun(args []string, factories []controls.Factory, stderr io.Writer) error {
	fs, dir := newFlags("run", stderr)
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return usageError{err}
	}
	if _, err := zerolog.ParseLevel(*level); err != nil || *level == "" {
		return usageError{fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", *level)}
	}
	// enroll and configure make the state dir; run never does, so a
	// mistyped --state-dir leaves no half-made one behind.
	if _, err := os.Stat(abs); os.IsNotExist(err) {
		return fmt.Errorf("service: state dir %s does not exist: the agent is not enrolled or configured there (a mistyped --state-dir?); run mamori-agent enroll --server URL --token T --ca-hash sha256:HEX --state-dir %s first", abs, abs)
	}
	log, closeLogs, err := openLogs(stderr, abs, *level)
	if err != nil {
		return err
	}
	defer closeLogs()
	opt := Options{StateDir: abs, Log: log, Factories: factories}
	run := func(ctx context.Context) error {
		err := Run(ctx, opt)
		if err != nil {
			log.Error().Err(err).Msg("mamori-agent stopped with an error")
		}
		return err
	}
	// Under the Windows SCM the service loop owns the root context.
	if handled, err := runAsService(run, log); handled {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return run(ctx)
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("status", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	s, err := ReadStatus(*dir)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	// Not enrolled and nothing to enroll from: an error (exit 1), so scripts
	// see it. With an installed config the service is enrolling: the hint
	// (and its last error) say how it goes.
	if !s.Enrolled {
		if _, err := uplink.LoadConfig(*dir); err != nil {
			return errors.New(s.Hint)
		}
	}
	if s.Hint != "" {
		fmt.Fprintln(stderr, "mamori-agent status:", s.Hint)
	}
	return nil
}

// stillRunning says whether a status that said running still holds: its
// process is alive where the OS tells (so a kill -9 shows at once), else its
// last write (at) is recent, at most a few status intervals old.
func stillRunning(running bool, pid int, at time.Time) bool {
	if !running {
		return false
	}
	if alive, known := processAlive(pid); known && !alive {
		return false
	}
	return time.Since(at) <= 5*statusEvery
}

// ReadStatus combines agent.json with the status.json the running agent
// writes (the spool itself is locked by the running agent). An agent whose
// status is older than a few intervals is reported as not running.
func ReadStatus(dir string) (Status, error) {
	st, err := uplink.LoadState(dir)
	if errors.Is(err, uplink.ErrNotEnrolled) {
		s := Status{Controls: map[string]controls.Status{}, LogFile: LogPath(dir), SystemLog: systemLogName}
		switch c, cerr := uplink.LoadConfig(dir); {
		case cerr == nil:
			s.Hint = fmt.Sprintf("not enrolled yet; the installed config names %s: the service enrolls itself when it starts and retries until the server answers (its attempts are in %s)",
				strings.Join(c.Servers, ", "), s.LogFile)
			// The enrolling service records its last failure in status.json.
			var last Status
			if b, err := os.ReadFile(filepath.Join(dir, FileStatus)); err == nil && json.Unmarshal(b, &last) == nil && last.LastEnrollError != nil {
				e := last.LastEnrollError
				s.LastEnrollError = e
				// It writes only at each attempt, minutes apart, so its age
				// says little: the pid does; where the OS cannot tell, an
				// attempt not long overdue.
				alive, known := processAlive(last.PID)
				s.Running = last.Running && (alive || !known && time.Since(e.RetryAt) < 2*time.Minute)
				s.PID = last.PID
				s.Hint += fmt.Sprintf("; attempt %d at %s failed: %s", e.Attempt, e.At.Local().Format(time.RFC3339), e.Error)
			}
		case errors.Is(cerr, uplink.ErrNoConfig):
			s.Hint = "not enrolled: run mamori-agent enroll --server https://HOST:8443 --token T --ca-hash sha256:HEX (the server prints this command at start), then mamori-agent install"
		default:
			s.Hint = "not enrolled, and the installed config is unusable: " + cerr.Error()
		}
		return s, nil
	}
	if err != nil {
		return Status{}, err
	}
	var s Status
	b, err := os.ReadFile(filepath.Join(dir, FileStatus))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return Status{}, fmt.Errorf("service: %w", err)
	default:
		if err := json.Unmarshal(b, &s); err != nil {
			return Status{}, fmt.Errorf("service: %s: %w", FileStatus, err)
		}
	}
	s.Running = stillRunning(s.Running, s.PID, s.UpdatedAt)
	if s.PolicyVersion == "" {
		if v, _, _, err := uplink.LoadPolicy(dir); err == nil {
			s.PolicyVersion = v
		}
	}
	// A running agent says which server it uses now; otherwise show the
	// list the service starts with (a configure since may have changed it).
	if !s.Running || s.Server == "" {
		if urls, err := uplink.ServersOf(dir, st); err == nil {
			s.Server, s.Servers = urls[0], urls
		} else {
			s.Server, s.Servers = st.Server, nil
		}
	}
	s.Enrolled, s.AgentID, s.LogFile, s.SystemLog = true, st.AgentID, LogPath(dir), systemLogName
	s.LastEnrollError = nil // from before the enrollment
	if s.Controls == nil {
		s.Controls = map[string]controls.Status{}
	}
	if f := s.PolicyFailed; f != nil {
		inForce := s.PolicyVersion
		if inForce == "" {
			inForce = "none"
		}
		s.Hint = fmt.Sprintf("policy %s was refused at %s, so the controls keep policy %s: %s",
			f.Version, f.At.Local().Format(time.RFC3339), inForce, f.Error)
	}
	return s, nil
}
