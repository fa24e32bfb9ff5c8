// Command mamori-agent is the Mamori endpoint agent: it enrolls with the
// Mamori server, runs the safety controls, and ships their hash-chained
// events through a durable spool.
package main

import (
	"os"

	"github.com/mamori/mamori/agent/internal/controls/all"
	"github.com/mamori/mamori/agent/internal/service"
)

// Set at build time: -ldflags "-X main.version=... -X main.commit=... -X main.date=...".
var version, commit, date string

func main() {
	service.Build = service.BuildInfo{Version: version, Commit: commit, Date: date}
	os.Exit(service.Main(os.Args[1:], all.Factories, os.Stdout, os.Stderr))
}
