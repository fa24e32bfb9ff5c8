// Command mamori-server is the Mamori on-prem server: it enrolls agents,
// stores their hash-chained events in a tamper-evident log, serves the
// admin API and keeps the control plane (policies, registers) in etcd.
//
//	mamori-server serve [--data-dir DIR] [--listen ADDR] [--hostname NAMES] [--etcd-endpoints URLS] [--events-dsn DSN]
//	mamori-server install|uninstall|start|stop [serve flags]
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
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `usage:
  mamori-server serve [flags]      run in the foreground (or under the service manager)
  mamori-server install [flags]    install as a system service (Windows service / systemd unit) running "serve"
  mamori-server uninstall|start|stop
<<<<<<< HEAD
  mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD|WITNESS_DIR] [--lang en|ja]
                                   check an evidence bundle offline (exit 0 intact, 1 not, 2 could not check)
  mamori-server witness --server URL --token T --pubkey FILE --state DIR [--once]
                                   keep the log's checkpoints elsewhere and alarm on a fork (exit 0/1/2)
=======
  mamori-server verify BUNDLE --pubkey FILE [--checkpoint OLD]
                                   check an evidence bundle offline (exit 0 only if intact)
  mamori-server tokens list|create|revoke, agents disable|enable
                                   list and revoke credentials of a running server ("tokens" for help)
>>>>>>> issue-13
  mamori-server version

serve and install flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		newFlags(io.Discard).fs.PrintDefaults()
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(rest, stdout, stderr)
	case "install", "uninstall", "start", "stop":
		err = cmdService(cmd, rest, stdout, stderr)
	case "register", "policy":
		err = cmdAdmin(cmd, rest, stdout, stderr)
	case "tokens", "agents":
		err = cmdTokens(cmd, rest, stdout, stderr)
	case "verify":
		err = cmdVerify(rest, stdout, stderr)
	case "witness":
		err = cmdWitness(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "mamori-server", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		f := newFlags(stdout)
		f.fs.SetOutput(stdout)
		f.fs.PrintDefaults()
	default:
		fmt.Fprintf(stderr, "mamori-server: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		var (
			ue usageError
			cc cannotCheck
		)
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
