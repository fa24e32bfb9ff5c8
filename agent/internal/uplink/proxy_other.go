//go:build !windows

package uplink

import "net/http"

// systemProxy is HTTPS_PROXY / NO_PROXY from the environment (systemd:
// Environment= or the EnvironmentFile of the unit).
var systemProxy = http.ProxyFromEnvironment
