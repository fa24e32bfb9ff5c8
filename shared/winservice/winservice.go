// Package winservice sets what a Windows service of ours needs and an MSI
// built by wixl cannot declare (wixl has no ServiceConfig): a quoted
// ImagePath, restart on failure and, for the agent, delayed auto start.
// The agent and the server both apply it at install and at every start.
package winservice

import (
	"errors"
	"strings"
)

// ErrUnsupported is Harden's and Self's answer off Windows: systemd and
// launchd restart by the packages' own units and take no quoting.
var ErrUnsupported = errors.New("winservice: Windows services only")

// QuoteImagePath quotes the program part of a service command line that
// has a space in it and no quotes ("C:\Program Files\Mamori\x.exe" run):
// unquoted, Windows would try C:\Program.exe first (CWE-428).
func QuoteImagePath(p string) string {
	if p == "" || strings.HasPrefix(p, `"`) {
		return p
	}
	i := strings.Index(strings.ToLower(p), ".exe")
	if i < 0 {
		return p
	}
	exe := p[:i+len(".exe")]
	if !strings.Contains(exe, " ") {
		return p
	}
	return `"` + exe + `"` + p[len(exe):]
}
