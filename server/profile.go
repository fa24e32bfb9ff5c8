package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// EnvCPUProfile names a file to write a CPU profile of the whole run of
// `serve` to (in the foreground only), for profiling the real server under
// mamori-loadgen: go tool pprof -top bin/mamori-server FILE.
const EnvCPUProfile = "MAMORI_CPU_PROFILE"

// startCPUProfile starts the profile EnvCPUProfile asks for; the returned
// function stops and writes it.
func startCPUProfile() (func(), error) {
	path := os.Getenv(EnvCPUProfile)
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvCPUProfile, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", EnvCPUProfile, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
