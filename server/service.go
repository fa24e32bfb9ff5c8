package main

import (
	"fmt"
	"io"

	"github.com/kardianos/service"
)

// serviceName is the Windows service and systemd unit name.
const serviceName = "mamori-server"

func serviceConfig(args []string) *service.Config {
	return &service.Config{
		Name:        serviceName,
		DisplayName: "Mamori Server",
		Description: "Mamori (守り) server: agent enrollment, tamper-evident event log, admin API.",
		Arguments:   args,
		// Start after the network; no DelayedAutoStart (it fails under Wine
		// and is not needed for a server).
		Dependencies: []string{"After=network-online.target", "Wants=network-online.target"},
		Option: service.KeyValue{
			"StartType":              "automatic",
			"OnFailure":              "restart", // Windows recovery actions need this option
			"OnFailureDelayDuration": "10s",
			"OnFailureResetPeriod":   86400,
			"Restart":                "always", // systemd
			"LimitNOFILE":            65536,
		},
	}
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
