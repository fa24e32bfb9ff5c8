// Command mamori-server is the Mamori on-prem server: it enrolls agents,
// stores their hash-chained events in a tamper-evident log, serves the
// admin API and keeps the control plane (policies, registers) in etcd.
//
//	mamori-server serve [--data-dir DIR] [--listen ADDR] [--hostname NAMES] [--etcd-endpoints URLS] [--events-dsn DSN]
//	mamori-server install|uninstall|start|stop [serve flags]
//	mamori-server harden-service [NAME]
//	mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD|WITNESS_DIR] [--lang en|ja]
//	mamori-server witness --server URL --token T --pubkey FILE --state DIR [--once]
//	mamori-server version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at build time: -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var version, commit, date string

const usage = `usage: mamori-server COMMAND [flags]     (mamori-server COMMAND --help lists its flags)

commands:
  serve [flags]                    run in the foreground (or under the service manager)
  install [flags]                  install as a system service (Windows service / systemd unit) running "serve"
  uninstall                        remove that service
  start                            start the service
  stop                             stop the service
  harden-service [NAME]            Windows: quote the service's path, restart it on any failure
                                   (default NAME MamoriServer; the MSI runs it, install and each start do it too)
  export --out FILE [--agent PC] [--from T] [--to T] [--format bundle|csv]
                                   fetch an evidence bundle or CSV from a running server (auditor token)
  verify BUNDLE --pubkey FILE [--checkpoint OLD|WITNESS_DIR] [--lang en|ja]
                                   check an evidence bundle offline (exit 0 intact, 1 not, 2 could not check)
  witness --server URL --token T --pubkey FILE --state DIR [--once]
                                   keep the log's checkpoints elsewhere and alarm on a fork (exit 0/1/2)
  register import FILE | export    registers as Excel CSV, against a running server (admin token)
  policy apply FILE                validate a policy YAML and apply it on a running server
  tokens list|create|revoke        enrollment and API tokens of a running server ("tokens" for help)
  agents disable|enable ID         refuse or re-admit an agent's certificate on a running server
  compliance [--department D]      each PC's status per control, and why a control fails (any role's token)
  kek new FILE                     write a new key-encryption key for a site of several servers (mode 0600; never overwrites)
  version                          print the version, commit and build date
  help [COMMAND]                   print this, or COMMAND's usage and flags

serve and install flags:
`

// versionString is "VERSION (commit C, built D, goX os/arch)", falling back
// to the toolchain's VCS stamp.
func versionString() string {
	info, _ := debug.ReadBuildInfo()
	return versionFrom(version, commit, date, info)
}

// versionFrom is versionString of the -ldflags values v, c, d; what they
// leave out comes from info (nil: none): the module's version (go install
// m@v), and the git commit, its time and whether the tree was modified,
// which plain "go build" in a git checkout stamps.
func versionFrom(v, c, d string, info *debug.BuildInfo) string {
	modified := false
	if info != nil {
		if mv := info.Main.Version; v == "" && mv != "" {
			v = strings.Trim(mv, "()") // "(devel)": a build from a checkout
		}
		vcs := map[string]string{}
		for _, s := range info.Settings {
			vcs[s.Key] = s.Value
		}
		if c == "" && vcs["vcs.revision"] != "" {
			c, modified = vcs["vcs.revision"], vcs["vcs.modified"] == "true"
		}
		if d == "" {
			d = vcs["vcs.time"]
		}
	}
	for _, p := range []*string{&v, &c, &d} {
		if *p == "" {
			*p = "unknown"
		}
	}
	if modified {
		c += ", modified" // built from a tree with changes not in that commit
	}
	return fmt.Sprintf("%s (commit %s, built %s, %s %s/%s)", v, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		f := newFlags(stderr)
		f.fs.SetOutput(stderr)
		f.fs.PrintDefaults()
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(rest, stdout, stderr)
	case "install", "uninstall", "start", "stop":
		err = cmdService(cmd, rest, stdout, stderr)
	case "harden-service":
		err = cmdHardenService(rest, stdout, stderr)
	case "register", "policy":
		err = cmdAdmin(cmd, rest, stdout, stderr)
	case "tokens", "agents":
		err = cmdTokens(cmd, rest, stdout, stderr)
	case "export":
		err = cmdExport(rest, stdout, stderr)
	case "compliance":
		err = cmdCompliance(rest, stdout, stderr)
	case "verify":
		err = cmdVerify(rest, stdout, stderr)
	case "witness":
		err = cmdWitness(rest, stdout, stderr)
	case "kek":
		err = cmdKEK(rest, stdout, stderr)
	case "version", "--version", "-version":
		err = cmdVersion(rest, stdout, stderr)
	case "help", "-h", "--help":
		if len(rest) > 0 {
			return helpTopic(rest, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		f := newFlags(stdout)
		f.fs.SetOutput(stdout)
		f.fs.PrintDefaults()
	default:
		fmt.Fprintf(stderr, "mamori-server: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	return exitCode(err, stderr)
}

// exitCode prints err and returns the exit code for it: 0 for none (or
// --help), 2 for bad input, 1 for a failure.
func exitCode(err error, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		var (
			ue usageError
			cc cannotCheck
			us usageShown
		)
		if errors.As(err, &us) {
			return 2 // the command printed its message and usage
		}
		if errors.As(err, &ue) || errors.As(err, &cc) {
			fmt.Fprintln(stderr, "mamori-server:", err)
			return 2
		}
		fmt.Fprintln(stderr, "mamori-server:", err)
		return 1
	}
	return 0
}

// usageError marks bad command-line input (exit code 2).
type usageError struct{ error }

// Unwrap lets run see a flag.ErrHelp inside: --help is no error.
func (e usageError) Unwrap() error { return e.error }

// usageShown is a usage error (exit code 2) whose message the command has
// printed already, with its usage after it.
type usageShown struct{ error }

// helpTopics are the commands "help TOPIC" knows: each prints its usage
// for COMMAND --help.
var helpTopics = []string{"serve", "install", "uninstall", "start", "stop", "harden-service", "export", "verify", "witness",
	"register", "policy", "tokens", "agents", "compliance", "kek", "version", "help"}

// helpTopic runs "help TOPIC": the usage of that command, on stdout, exit 0.
func helpTopic(args []string, stdout, stderr io.Writer) int {
	topic := args[0]
	if len(args) > 1 {
		fmt.Fprintf(stderr, "mamori-server help: want one topic, got %d: %q\n", len(args), args)
		return 2
	}
	if topic == "help" || isHelp(topic) {
		return run([]string{"help"}, stdout, stderr)
	}
	for _, t := range helpTopics {
		if t == topic {
			// The commands print their usage on their error stream.
			return run([]string{topic, "--help"}, stdout, stdout)
		}
	}
	fmt.Fprintf(stderr, "mamori-server help: unknown help topic %q: want one of %s\n", topic, strings.Join(helpTopics, ", "))
	return 2
}

// unknownSubcommand prints that sub is no subcommand of cmd, then cmd's
// usage, and returns the usage error for it.
func unknownSubcommand(stderr io.Writer, cmd, sub string, usage func()) error {
	fmt.Fprintf(stderr, "mamori-server %s: unknown subcommand %q\n\n", cmd, sub)
	usage()
	return usageShown{fmt.Errorf("%s: unknown subcommand %q", cmd, sub)}
}

// cmdVersion prints the version; it takes no flags or arguments.
func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mamori-server version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: mamori-server version\n\nprints the version, commit and build date\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageShown{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("version: unexpected argument %q", fs.Arg(0))}
	}
	fmt.Fprintln(stdout, "mamori-server", versionString())
	return nil
}

// isHelp reports whether arg asks for a command's usage, as the flag
// package takes it.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}
