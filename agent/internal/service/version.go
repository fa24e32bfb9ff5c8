package service

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// BuildInfo names the build: set by main from -ldflags -X (make build and
// make dist), else taken from the Go toolchain's VCS stamp.
type BuildInfo struct {
	Version, Commit, Date string
}

// Build is this program's build; main sets it before Main.
var Build BuildInfo

// String is "VERSION (commit C, built D, goX os/arch)", with "unknown" for
// what the build did not record.
func (b BuildInfo) String() string {
	v, c, d := b.Version, b.Commit, b.Date
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
	}
	for _, p := range []*string{&v, &c, &d} {
		if *p == "" {
			*p = "unknown"
		}
	}
	return fmt.Sprintf("%s (commit %s, built %s, %s %s/%s)", v, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
