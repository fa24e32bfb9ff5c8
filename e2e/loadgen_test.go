package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestLoadgenMeasuresARealServer runs mamori-loadgen, built as its own
// program, against a real server: its agents enroll, open their long-polls
// over --connect-over, ship paced batches over HTTP/2, a
// policy change reaches every long-poll, and the figures it prints agree
// with what the server stored. The README's ingest table rests on these
// figures, so the tool that makes them is tested as users run it.
func TestLoadgenMeasuresARealServer(t *testing.T) {
	srvBin, _ := binaries(t)
	lg := filepath.Join(binDir, "mamori-loadgen")
	if out, err := exec.Command("go", "build", "-o", lg, "../loadgen").CombinedOutput(); err != nil {
		t.Fatalf("go build ../loadgen: %v\n%s", err, out)
	}
	dir, port := filepath.Join(t.TempDir(), "data"), freePort(t)
	s := startServer(t, srvBin, dir, port)
	defer s.stop(t, syscall.SIGTERM)

	ids := filepath.Join(t.TempDir(), "ids.jsonl")
	const agents = 4
	out, err := exec.Command(lg, "--server", fmt.Sprintf("https://127.0.0.1:%d", port), "--data-dir", dir,
		"--pid", strconv.Itoa(s.cmd.Process.Pid), "--ids", ids, "--agents", strconv.Itoa(agents), "--batch", "10",
		"--rate", "40", "--long-poll", "--connect-over", "2s", "--policy-change", "2s", "--duration", "4s").CombinedOutput()
	if err != nil {
		t.Fatalf("mamori-loadgen: %v\n%s", err, out)
	}
	report := string(out)
	t.Logf("mamori-loadgen printed:\n%s", report)
	for _, want := range []string{
		"not acked    503 busy 0, refused 0, timeouts 0, errors 0",
		fmt.Sprintf("policy change reached %d of %d", agents, agents),
		"HTTP/2.0",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	m := regexp.MustCompile(`(?m)^acked\s+(\d+) events in (\d+) batches`).FindStringSubmatch(report)
	if m == nil {
		t.Fatal("report has no acked line")
	}
	acked, _ := strconv.Atoi(m[1])
	if acked < 40 {
		t.Errorf("acked %d events in 4 s at 40 events/s, want at least 40", acked)
	}
	if !regexp.MustCompile(`(?m)^long-polls\s+4 held, \d+ answers, 0 errors`).MatchString(report) {
		t.Error("long-polls line: want 4 held and 0 errors")
	}
	if !regexp.MustCompile(`(?m)^server CPU\s+[0-9.]+ s = \d+% of one core, [0-9.]+ µs per event`).MatchString(report) {
		t.Error("report lacks the server's CPU per event (read from /proc with --pid)")
	}
	if !regexp.MustCompile(`(?m)^indexed\s+[0-9.]+ s of server CPU until the query indexes caught up, .* after the window: [0-9.]+ µs per event`).MatchString(report) {
		t.Error("report lacks the server's CPU per event until the indexes caught up (read from /metrics)")
	}
	if !regexp.MustCompile(`(?m)^batches\s+\d+ built before the clock \(.*\), 0 built while shipping`).MatchString(report) {
		t.Error("report lacks the batches built before the clock")
	}

	// A second run continues every chain where the first left it, though
	// the first built batches it never sent.
	out, err = exec.Command(lg, "--server", fmt.Sprintf("https://127.0.0.1:%d", port), "--data-dir", dir,
		"--ids", ids, "--agents", strconv.Itoa(agents), "--batch", "10", "--rate", "40", "--duration", "2s").CombinedOutput()
	if err != nil {
		t.Fatalf("mamori-loadgen, second run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "not acked    503 busy 0, refused 0, timeouts 0, errors 0") {
		t.Errorf("second run:\n%s", out)
	}
	m2 := regexp.MustCompile(`(?m)^acked\s+(\d+) events`).FindStringSubmatch(string(out))
	if m2 == nil {
		t.Fatalf("second run has no acked line:\n%s", out)
	}
	more, _ := strconv.Atoi(m2[1])
	acked += more

	// Every acked event is in the server's log, in each agent's chain.
	f, err := os.Open(ids)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stored, seen := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var id struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &id); err != nil {
			t.Fatalf("ids file: %v", err)
		}
		seen++
		evs := s.events(t, id.ID)
		checkContiguous(t, evs)
		if got := maxSeq(evs); got != id.Seq {
			t.Errorf("agent %s: the server's chain ends at seq %d, the load generator's at %d", id.ID, got, id.Seq)
		}
		stored += len(evs)
	}
	if seen != agents {
		t.Fatalf("ids file has %d identities, want %d", seen, agents)
	}
	if stored < acked {
		t.Errorf("the server stored %d of the %d events the load generator counted as acked", stored, acked)
	}
}
