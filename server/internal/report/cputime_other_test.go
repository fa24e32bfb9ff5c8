//go:build !unix

package report

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
