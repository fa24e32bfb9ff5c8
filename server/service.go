package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/kardianos/service"
	"github.com/rs/zerolog"

	"github.com/mamori/mamori/shared/winservice"
)

// serviceName is the service's name: on Windows the one the MSI installs
// (so install, start, stop and uninstall reach the same service), elsewhere
// the systemd unit's.
var serviceName = func() string {
	if runtime.GOOS == "windows" {
		return "MamoriServer"
	}
	return "mamori-server"
}()

// serviceConfig is the config for the service manager kardianos chose on
// this machine.
func serviceConfig(args []string) *service.Config {
	return serviceConfigFor(service.Platform(), args)
}

// serviceConfigFor builds the config for a kardianos platform name
// ("windows-service", "linux-systemd", ...). Dependencies differ per
// manager: systemd takes unit lines, but Windows passes the list to the SCM
// as service names and OpenRC as depend() lines, so the systemd lines there
// would name services that do not exist and the service would not start.
func serviceConfigFor(platform string, args []string) *service.Config {
	c := &service.Config{
		Name:        serviceName,
		DisplayName: "Mamori Server",
		Description: "Mamori (守り) server: agent enrollment, tamper-evident event log, admin API.",
		Arguments:   args,
		// Windows recovery actions: winservice.Harden after install.
		Option: service.KeyValue{
			"StartType":   "automatic",
			"Restart":     "always", // systemd
			"LimitNOFILE": 65536,
		},
	}
	if platform == "linux-systemd" {
		// Start after the network is up (listen addresses may be specific IPs).
		c.Dependencies = []string{"After=network-online.target", "Wants=network-online.target"}
	}
	return c
}

// serviceUsage is the usage of the service commands; install's flags follow.
var serviceUsage = map[string]string{
	"install":   "usage: mamori-server install [flags]\n\nInstalls the system service " + serviceName + ", which runs \"serve\" with these flags:\n",
	"uninstall": "usage: mamori-server uninstall\n\nRemoves the system service " + serviceName + " (its data dir stays). Takes no flags.\n",
	"start":     "usage: mamori-server start\n\nStarts the system service " + serviceName + ". Takes no flags.\n",
	"stop":      "usage: mamori-server stop\n\nStops the system service " + serviceName + ". Takes no flags.\n",
}

// cmdService installs, uninstalls, starts or stops the system service.
func cmdService(cmd string, args []string, stdout, stderr io.Writer) error {
	f := newFlags(stderr)
	if cmd != "install" {
		// Only install takes the serve flags: the others' --help lists none.
		f.fs = flag.NewFlagSet("mamori-server", flag.ContinueOnError)
		f.fs.SetOutput(stderr)
	}
	f.fs.Usage = func() { fmt.Fprint(stderr, serviceUsage[cmd]); f.fs.PrintDefaults() }
	if err := f.parse(args); err != nil {
		return err
	}
	svcArgs, err := f.serviceArgs()
	if err != nil {
		return err
	}
	svc, err := service.New(&program{}, serviceConfig(svcArgs))
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := service.Control(svc, cmd); err != nil {
		return fmt.Errorf("service %s: %w", cmd, err)
	}
	if cmd == "install" {
		fmt.Fprintf(stdout, "installed service %s: %s\n", serviceName, svcArgs)
		if runtime.GOOS == "windows" {
			if err := hardenService(serviceName); err != nil {
				return fmt.Errorf("service %s installed, but not all settings applied: %w", serviceName, err)
			}
		}
	} else {
		fmt.Fprintf(stdout, "service %s: %s done\n", serviceName, cmd)
	}
	return nil
}

// hardenService sets what neither the MSI (wixl has no ServiceConfig) nor
// kardianos does: the quoted path (unquoted, Windows would try
// C:\Program.exe first) and restarts also after an exit with an error code.
// No delayed auto start: agents wait for a server, not the reverse.
func hardenService(name string) error { return winservice.Harden(name, false) }

const hardenUsage = `usage: mamori-server harden-service [NAME]

Windows: quotes the path of the service NAME (default MamoriServer) and makes it restart after
any failure. The MSI runs it; install and each start of the service do it too.
`

// cmdHardenService is "harden-service [NAME]", run by the MSI after it
// installed the service (default NAME: the MSI's, serviceName).
func cmdHardenService(args []string, stdout, stderr io.Writer) error {
	name := serviceName
	switch {
	case len(args) == 1 && isHelp(args[0]):
		fmt.Fprint(stderr, hardenUsage)
		return flag.ErrHelp
	case len(args) > 1:
		return usageError{fmt.Errorf("harden-service takes one service name at most, got %q", args)}
	case len(args) == 1 && (args[0] == "" || strings.HasPrefix(args[0], "-")):
		return usageError{fmt.Errorf("harden-service: %q is not a service name", args[0])}
	case len(args) == 1:
		name = args[0]
	}
	if err := hardenService(name); err != nil {
		if errors.Is(err, winservice.ErrUnsupported) {
			return usageError{fmt.Errorf("harden-service is for the Windows service: %w", err)}
		}
		return fmt.Errorf("service %s: not all settings applied (the service retries at each start): %w", name, err)
	}
	fmt.Fprintf(stdout, "service %s: quoted path and recovery actions set\n", name)
	return nil
}

// hardenAtStart repeats hardenService for the service we run as, so that a
// repaired or upgraded install (or an MSI action that could not do it) gets
// the settings back.
func hardenAtStart(log zerolog.Logger) {
	if runtime.GOOS != "windows" {
		return
	}
	name, err := winservice.Self()
	if err == nil {
		err = hardenService(name)
	}
	if err != nil {
		log.Warn().Err(err).Msg("service: service settings not all applied")
	}
}
