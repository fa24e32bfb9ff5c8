//go:build !unix

package eventlog_test

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
