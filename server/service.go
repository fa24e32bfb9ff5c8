package main

import (
	"fmt"
	"io"

	"github.com/kardianos/service"
)

// serviceName is the Windows service and systemd unit name.
const serviceName = "mamori-server"

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
		// No DelayedAutoStart: it fails under Wine and a server needs none.
		Option: service.KeyValue{
			"StartType":              "automatic",
			"OnFailure":              "restart", // Windows recovery actions need this option
			"OnFailureDelayDuration": "10s",
			"OnFailureResetPeriod":   86400,
			"Restart":                "always", // systemd
			"LimitNOFILE":            65536,
		},
	}
	if platform == "linux-systemd" {
		// Start after the network is up (listen addresses may be specific IPs).
		c.Dependencies = []string{"After=network-online.target", "Wants=network-online.target"}
	}
	return c
}

// cmdService installs, uninstalls, starts or stops the system service.
func cmdService(cmd string, args []string, stdout, stderr io.Writer) error {
	f := newFlags(stderr)
	if err := f.parse(args); err != nil {
		return err
	}
	if cmd != "install" && f.fs.NFlag() > 0 {
		return usageError{fmt.Errorf("%s takes no flags", cmd)}
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
	} else {
		fmt.Fprintf(stdout, "service %s: %s done\n", serviceName, cmd)
	}
	return nil
}
