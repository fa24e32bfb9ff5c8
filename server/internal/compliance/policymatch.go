package compliance

import (
	"fmt"
	"time"

	"github.com/mamori/mamori/server/internal/eventlog"
)

// PolicyGrace is how long a PC may report another policy version than the
// one the server assigns before its controls stop counting: a change
// reaches an agent's long-poll within seconds, and an agent whose
// long-poll or shipping is failing retries with a backoff of at most 2
// minutes each, so 5 minutes covers a delivery (and the inventory's 15 s
// cache) with room, while staying far below silent_after (30 m).
const PolicyGrace = 5 * time.Minute

// Reason keys and alert kinds of the policy the PC runs.
const (
	ReasonMismatch     = "policy.mismatch"       // the PC runs another policy than the assigned one
	ReasonTampered     = "agent.policy_tampered" // the agent found its stored policy edited
	KindPolicyMismatch = "policy_mismatch"
	KindPolicyTampered = "policy_tampered"
)

// TamperedOpen is how long an agent.policy_tampered report stays among the
// open alerts (it is raised once; the agent has already discarded the file).
const TamperedOpen = 24 * time.Hour

// Agent event types that say which policy version an agent runs.
const (
	typeStarted  = "agent.started"         // attr policy_version
	typeApplied  = "agent.policy_applied"  // attr version
	typeTampered = "agent.policy_tampered" // attrs stored_version, actual_version, path
)

// Running is the policy version an agent last reported running.
type Running struct {
	Version string    `json:"version"`
	Since   time.Time `json:"since"` // server time of its first report in a row
	First   int64     `json:"first"` // log index of that first report
	Index   int64     `json:"index"` // log index of the latest report
}

// Tampered is the latest agent.policy_tampered report of an agent.
type Tampered struct {
	Index    int64     `json:"index"`
	Received time.Time `json:"received"`
	Stored   string    `json:"stored_version"`
	Actual   string    `json:"actual_version"`
	Path     string    `json:"path"`
}

// Mismatch is shown on a host whose running policy is not the assigned one.
type Mismatch struct {
	Running  string    `json:"running"` // "" = none (a fresh agent, or one that discarded its file)
	Assigned string    `json:"assigned"`
	Since    time.Time `json:"since"`
}

// policyInfo is what Derive knows of the policies agents run.
type policyInfo struct {
	grace    time.Duration
	running  map[string]Running
	tampered map[string]Tampered
	effSince map[string]effSeen // agent -> when its effective version was first seen
}

type effSeen struct {
	version string
	at      time.Time
}

func received(st *eventlog.Stored) time.Time {
	if !st.Received.IsZero() {
		return st.Received.UTC()
	}
	return st.Time.UTC()
}

// applyAgent folds an agent.* event into the tracker; t.mu is held.
func (t *Tracker) applyAgent(st *eventlog.Stored) {
	if st.Pruned {
		return
	}
	str := func(k string) (string, bool) { s, ok := st.Attrs[k].(string); return s, ok }
	if st.Type == typeTampered {
		s, _ := str("stored_version")
		a, _ := str("actual_version")
		p, _ := str("path")
		if prev, ok := t.tampered[st.Agent]; !ok || prev.Index < st.Index {
			t.tampered[st.Agent] = Tampered{Index: st.Index, Received: received(st), Stored: s, Actual: a, Path: p}
			t.dirty = true
		}
		return
	}
	key := "policy_version"
	if st.Type == typeApplied {
		key = "version"
	}
	v, ok := str(key)
	if !ok {
		return
	}
	prev, had := t.running[st.Agent]
	if had && prev.Index > st.Index {
		return
	}
	r := Running{Version: v, Since: received(st), First: st.Index, Index: st.Index}
	if had && prev.Version == v {
		r.Since, r.First = prev.Since, prev.First
	}
	t.running[st.Agent] = r
}

func shortV(v string) string {
	if v == "" {
		return "(なし)"
	}
	return v
}

func shortVEN(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

// mismatchTexts are the reason texts of a policy mismatch; off names the
// control the agent reports off although the assigned policy runs it.
func mismatchTexts(running, assigned string, known, off bool) (ja, en string) {
	ja = "サーバーが割り当てたポリシーと異なるポリシーで動作しています（端末のポリシーファイルが変更された可能性があります）"
	en = "the PC runs another policy than the one the server assigned (its policy file may have been changed)"
	if off {
		ja = "エージェントはこの制御を無効（off）として報告しています。" + ja
		en = "the agent reports this control off, which the assigned policy runs: " + en
	}
	if known {
		ja += fmt.Sprintf("。動作中の版 %s、割り当てた版 %s", shortV(running), shortV(assigned))
		en += fmt.Sprintf("; running version %s, assigned version %s", shortVEN(running), shortVEN(assigned))
	}
	return ja, en
}

func tamperedTexts(tp Tampered) (ja, en string) {
	ja = fmt.Sprintf("端末のポリシーファイル %s が変更されていました（記録された版 %s、内容の版 %s）。エージェントはこれを破棄し、サーバーから取得し直します",
		tp.Path, shortV(tp.Stored), shortV(tp.Actual))
	en = fmt.Sprintf("the policy file %s on the PC was changed (stored version %s, content hashes to %s); the agent discarded it and fetches the policy from the server",
		tp.Path, shortVEN(tp.Stored), shortVEN(tp.Actual))
	return ja, en
}
