package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// EnvCPUProfile names a file to write a CPU profile of the whole run of
// `serve` to (in the foreground only), for profiling the real server under
// mamori-loadgen: go tool pprof -top bin/mamori-server FILE.
const EnvCPUProfile = "MAMORI_CPU_PROFILE"

// EnvTrace names a file to write an execution trace of the whole run of
// `serve` to (foreground only): where goroutines wait rather than where the
// CPU goes (go tool trace FILE; go tool trace -pprof=sync FILE > sync.prof).
// Keep such runs short: a trace grows by megabytes a second under load.
const EnvTrace = "MAMORI_TRACE"

// EnvHeapProfile names a file that a foreground `serve` rewrites with a heap
// profile every 10 s, so the memory of a load in progress (agents holding
// connections) can be read: go tool pprof -sample_index=inuse_space FILE.
// FILE.mem gets a line of the runtime's memory figures at the same times:
// what the profile does not show (stacks, garbage awaiting collection,
// memory the runtime keeps from the OS).
const EnvHeapProfile = "MAMORI_HEAP_PROFILE"

// startCPUProfile starts the profile EnvCPUProfile and the trace EnvTrace
// ask for; the returned function stops and writes them.
func startCPUProfile() (func(), error) {
	var stops []func()
	stop := func() {
		for _, f := range stops {
			f()
		}
	}
	if path := os.Getenv(EnvCPUProfile); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvCPUProfile, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", EnvCPUProfile, err)
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
	}
	if path := os.Getenv(EnvTrace); path != "" {
		f, err := os.Create(path)
		if err == nil {
			if err = trace.Start(f); err != nil {
				f.Close()
			}
		}
		if err != nil {
			stop()
			return nil, fmt.Errorf("%s: %w", EnvTrace, err)
		}
		stops = append(stops, func() { trace.Stop(); f.Close() })
	}
	if path := os.Getenv(EnvHeapProfile); path != "" {
		done := make(chan struct{})
		go writeHeapProfiles(path, done)
		stops = append(stops, func() { close(done) })
	}
	return stop, nil
}

func writeHeapProfiles(path string, done <-chan struct{}) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		f, err := os.Create(path + ".tmp")
		if err != nil {
			continue
		}
		err = pprof.Lookup("heap").WriteTo(f, 0)
		if cerr := f.Close(); err == nil && cerr == nil {
			_ = os.Rename(path+".tmp", path)
		}
		appendMemStats(path + ".mem")
	}
}

func appendMemStats(path string) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}
	metrics.Read(sample)
	var live, gogc uint64
	if sample[0].Value.Kind() == metrics.KindUint64 {
		live = sample[0].Value.Uint64()
	}
	if sample[1].Value.Kind() == metrics.KindUint64 {
		gogc = sample[1].Value.Uint64()
	}
	const mib = 1 << 20
	fmt.Fprintf(f, "%s goroutines=%d heap_live=%dMiB heap_alloc=%dMiB heap_inuse=%dMiB heap_idle=%dMiB heap_released=%dMiB stack_inuse=%dMiB next_gc=%dMiB gogc=%d sys=%dMiB gc=%d\n",
		time.Now().Format(time.RFC3339), runtime.NumGoroutine(), live/mib, m.HeapAlloc/mib, m.HeapInuse/mib, m.HeapIdle/mib,
		m.HeapReleased/mib, m.StackInuse/mib, m.NextGC/mib, gogc, m.Sys/mib, m.NumGC)
	f.Close()
}
