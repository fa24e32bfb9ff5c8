package main

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// report is what a run measured.
type report struct {
	mu                   sync.Mutex
	baseline             procSample // before any agent connected
	before, after        procSample // the shipping window
	beforeErr, afterErr  error
	peakFDs, peakThreads int
	peakRSS              int64
	elapsed              time.Duration
	selfCPU              time.Duration
	indexed              procSample    // once the indexer caught up after the window
	indexedIn            time.Duration // how long after the window that was
	indexedErr           error
	wake                 time.Duration
	longPolls            int
	rawHeldAtEnd         int64
	stats                *stats
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func (r *report) print(w io.Writer, cfg *config) {
	st := r.stats
	lat := slices.Clone(st.latencies)
	slices.Sort(lat)
	mode := "saturating"
	if cfg.rate > 0 {
		mode = fmt.Sprintf("paced %d events/s", cfg.rate)
	}
	proto, _ := st.proto.Load().(string)
	if proto == "" {
		proto = "no batch acked"
	}
	ev := st.events.Load()
	secs := r.elapsed.Seconds()
	fmt.Fprintf(w, "run          %d agents x %d events/batch, %s, %s, %s\n", cfg.agents, cfg.batch, mode, proto, r.elapsed.Round(time.Millisecond))
	if st.prebuilt > 0 || st.builtLate.Load() > 0 {
		fmt.Fprintf(w, "batches      %d built before the clock (%s), %d built while shipping\n", st.prebuilt, st.prebuild.Round(time.Millisecond), st.builtLate.Load())
	}
	fmt.Fprintf(w, "acked        %d events in %d batches: %.0f events/s\n", ev, st.batches.Load(), float64(ev)/secs)
	fmt.Fprintf(w, "not acked    503 busy %d, refused %d, timeouts %d, errors %d\n", st.busy.Load(), st.refused.Load(), st.timeouts.Load(), st.errs.Load())
	if s, ok := st.lastErr.Load().(string); ok && s != "" {
		fmt.Fprintf(w, "last error   %s\n", s)
	}
	if len(lat) > 0 {
		p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
		fmt.Fprintf(w, "ack latency  p50 %s  p90 %s  p99 %s  max %s  (p99/p50 %.1f)\n", p50.Round(time.Microsecond),
			percentile(lat, 0.90).Round(time.Microsecond), p99.Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond),
			float64(p99)/float64(max(p50, 1)))
	}
	if r.beforeErr == nil && r.afterErr == nil && cfg.pid > 0 {
		cpu := time.Duration(r.after.CPUTicks-r.before.CPUTicks) * time.Second / ticksPerSecond
		fmt.Fprintf(w, "server CPU   %.2f s = %.0f%% of one core", cpu.Seconds(), 100*cpu.Seconds()/secs)
		if ev > 0 {
			fmt.Fprintf(w, ", %.1f µs per event", float64(cpu.Microseconds())/float64(ev))
		}
		fmt.Fprintln(w)
		if r.indexedErr == nil && r.indexed.CPUTicks > 0 && ev > 0 {
			all := time.Duration(r.indexed.CPUTicks-r.before.CPUTicks) * time.Second / ticksPerSecond
			fmt.Fprintf(w, "indexed      %.2f s of server CPU until the query indexes caught up, %s after the window: %.1f µs per event\n",
				all.Seconds(), r.indexedIn.Round(time.Millisecond), float64(all.Microseconds())/float64(ev))
		} else if r.indexedErr != nil {
			fmt.Fprintf(w, "indexed      not measured: %v\n", r.indexedErr)
		}
		fmt.Fprintf(w, "server RSS   %s before agents connected, %s at start, %s at end, %s peak sampled (VmHWM %s)\n", mib(r.baseline.RSS), mib(r.before.RSS), mib(r.after.RSS), mib(max(r.peakRSS, r.after.RSS)), mib(r.after.Peak))
		fmt.Fprintf(w, "server fds   %d before agents connected, %d at start, %d at end, %d peak sampled; threads peak %d\n", r.baseline.FDs, r.before.FDs, r.after.FDs, max(r.peakFDs, r.after.FDs), max(r.peakThreads, r.after.Threads))
		if r.longPolls > 0 {
			fmt.Fprintf(w, "per agent    %.1f KiB of server RSS (end minus before agents connected, %d agents holding a long-poll)\n",
				float64(r.after.RSS-r.baseline.RSS)/1024/float64(r.longPolls), r.longPolls)
		}
	} else if cfg.pid > 0 {
		fmt.Fprintf(w, "server       /proc not read: %v %v\n", r.beforeErr, r.afterErr)
	}
	if r.longPolls > 0 {
		fmt.Fprintf(w, "long-polls   %d held, %d answers, %d errors", r.longPolls, st.polls.Load(), st.pollErrs.Load())
		if cfg.policyChange > 0 {
			fmt.Fprintf(w, "; policy change reached %d of %d in %s", st.woken.Load(), r.longPolls, r.wake.Round(time.Millisecond))
		}
		fmt.Fprintln(w)
		if e, ok := st.lastPollErr.Load().(string); ok {
			fmt.Fprintf(w, "poll error   %s\n", e)
		}
	}
	if cfg.raw > 0 {
		fmt.Fprintf(w, "raw conns    %d opened (%d failed); at the end %d shed by the server, %d still open\n",
			st.rawOpened.Load(), st.rawFailed.Load(), st.rawShed.Load(), r.rawHeldAtEnd)
	}
	fmt.Fprintf(w, "/healthz     %d answered, %d failed (fresh connection each second), slowest %s\n",
		st.healthOK.Load(), st.healthFail.Load(), time.Duration(st.healthMax.Load()).Round(time.Millisecond))
	fmt.Fprintf(w, "loadgen CPU  %.2f s (%.0f%% of one core, shares the machine with the server)\n", r.selfCPU.Seconds(), 100*r.selfCPU.Seconds()/secs)
}
