package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/host"
	"github.com/mamori/mamori/agent/internal/spool"
	"github.com/mamori/mamori/agent/internal/uplink"
	"github.com/mamori/mamori/shared/event"
	"github.com/mamori/mamori/shared/policy"
)

// Files the runtime keeps in the state dir next to uplink's.
const (
	FileSpool  = "spool.db"
	FileStatus = "status.json"
)

// Intervals of the runtime's own loops.
const (
	statusEvery    = 2 * time.Second
	inventoryEvery = 6 * time.Hour
	inventoryCheck = 10 * time.Minute // how often to look for a changed inventory
)

// EnvEmitRate names the test-only variable that makes the agent emit that
// many agent.test events per second (e2e tests and the footprint benchmark
// use it to produce load without a real control).
const EnvEmitRate = "MAMORI_TEST_EMIT_RATE"

// Options configure a Runtime.
type Options struct {
	StateDir  string
	Log       zerolog.Logger
	Factories []controls.Factory
	MaxSpool  int64 // spool bound; 0 = spool.DefaultMaxBytes
}

// Runtime is the running agent: spool, controls, shipper, policy sync,
// heartbeat and inventory.
type Runtime struct {
	opt      Options
	id       *uplink.Identity
	spool    *spool.Spool
	controls []controls.Control
	shipper  *uplink.Shipper
	servers  *uplink.ServerList
	started  time.Time

	mu         sync.Mutex // serialises policy application
	policy     *policy.Policy
	polVersion atomic.Value                  // string
	polFailed  atomic.Pointer[PolicyFailure] // latest policy refused; nil once one applies
	heartbeat  atomic.Int64                  // nanoseconds
	hbChanged  chan struct{}
}

// Status is what `mamori-agent status` prints; the running agent writes it
// to status.json.
type Status struct {
	Enrolled      bool                       `json:"enrolled"`
	AgentID       string                     `json:"agent_id,omitempty"`
	Server        string                     `json:"server,omitempty"`  // in use now (failover moves it), not the enrollment's
	Servers       []string                   `json:"servers,omitempty"` // the list, in the order tried
	Running       bool                       `json:"running"`
	PID           int                        `json:"pid,omitempty"`
	UpdatedAt     time.Time                  `json:"updated_at,omitzero"`
	SpoolDepth    uint64                     `json:"spool_depth"`
	LastSeq       uint64                     `json:"last_seq"`
	LastAckedSeq  uint64                     `json:"last_acked_seq"`
	Uplink        string                     `json:"uplink,omitempty"`         // failure kind, empty when fine
	PolicyVersion string                     `json:"policy_version,omitempty"` // the policy in force
	PolicyFailed  *PolicyFailure             `json:"policy_failed,omitempty"`  // a later policy refused
	Controls      map[string]controls.Status `json:"controls"`
	LogFile       string                     `json:"log_file,omitempty"`   // where `run` logs
	SystemLog     string                     `json:"system_log,omitempty"` // the OS log that gets warnings and errors
	// LastEnrollError is the service's last failed enrollment attempt, while
	// it is not enrolled.
	LastEnrollError *EnrollFailure `json:"last_enroll_error,omitempty"`
	Hint            string         `json:"hint,omitempty"` // what needs the admin: not enrolled, a refused policy
}

// PolicyFailure is the latest policy the agent refused: the controls keep
// the previous one until a policy applies.
type PolicyFailure struct {
	Version string    `json:"version"`
	Name    string    `json:"name,omitempty"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// EnrollFailure is a failed enrollment attempt of the service.
type EnrollFailure struct {
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
	Attempt int       `json:"attempt"`
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// Run starts the agent from an enrolled state dir and runs until ctx is done.
func Run(ctx context.Context, opt Options) error {
	id, err := uplink.LoadIdentity(opt.StateDir)
	if errors.Is(err, uplink.ErrNotEnrolled) {
		// Installed by an MSI or package: enroll now, never at install.
		if err := enrollAtStart(ctx, opt.StateDir, opt.Log); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before the server was reached
			}
			return err
		}
		id, err = uplink.LoadIdentity(opt.StateDir)
	}
	if err != nil {
		return err
	}
	sp, err := spool.Open(filepath.Join(opt.StateDir, FileSpool), spool.Options{
		Agent: id.State.AgentID, MaxBytes: opt.MaxSpool, Log: opt.Log})
	if errors.Is(err, spool.ErrInUse) {
		who := "another mamori-agent"
		if st, serr := ReadStatus(opt.StateDir); serr == nil && st.PID > 0 {
			who = fmt.Sprintf("mamori-agent (pid %d)", st.PID)
		}
		return fmt.Errorf("%s already runs with the state dir %s; stop it first (or use `mamori-agent status`): %w", who, opt.StateDir, err)
	}
	if err != nil {
		return err
	}
	defer sp.Close()
	urls, err := uplink.ServersOf(opt.StateDir, id.State)
	if err != nil {
		opt.Log.Warn().Err(err).Msg("service: installed config unusable; using the enrolled server only")
		urls = []string{id.State.Server}
	}
	r := &Runtime{opt: opt, id: id, spool: sp, started: time.Now(), hbChanged: make(chan struct{}, 1),
		servers: uplink.NewServerList(urls)}
	r.polVersion.Store("")
	r.heartbeat.Store(int64(policy.DefaultHeartbeat))
	if err := r.buildControls(); err != nil {
		return err
	}
	return r.run(ctx)
}

// buildControls makes each registered control with its own state dir. The
// factory is called once to learn the name (controls do no work in New).
func (r *Runtime) buildControls() error {
	seen := map[string]bool{}
	for _, f := range r.opt.Factories {
		name := f(controls.Env{Emit: r.spool, Clock: controls.RealClock{}, Log: r.opt.Log}).Name()
		if seen[name] {
			return fmt.Errorf("service: control %q registered twice", name)
		}
		seen[name] = true
		dir := filepath.Join(r.opt.StateDir, "controls", name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("service: %w", err)
		}
		r.controls = append(r.controls, f(controls.Env{Emit: r.spool, Clock: controls.RealClock{},
			Log: r.opt.Log.With().Str("control", name).Logger(), StateDir: dir}))
	}
	return nil
}

func (r *Runtime) emit(ctx context.Context, typ string, sev event.Severity, attrs event.Attrs) {
	if err := r.spool.Emit(ctx, event.Event{Control: "agent", Type: typ, Severity: sev, Attrs: attrs}); err != nil {
		r.opt.Log.Warn().Err(err).Str("type", typ).Msg("service: event not stored")
	}
}

func (r *Runtime) run(ctx context.Context) error {
	log := r.opt.Log
	// The saved policy first, so controls enforce from boot while offline.
	version, p, raw, err := uplink.LoadPolicy(r.opt.StateDir)
	if te := (*uplink.TamperedError)(nil); errors.As(err, &te) {
		// Edited on the PC: never enforce it. Run as before a first policy
		// (version "", so the long-poll fetches the real one at once), and
		// say so: the server shows it as a violation.
		log.Error().Err(err).Msg("service: saved policy was changed outside the agent; discarded, fetching the policy from the server")
		r.emit(ctx, "agent.policy_tampered", event.Violation, event.Attrs{
			"stored_version": te.Stored, "actual_version": te.Actual, "path": te.Path})
	} else if err != nil {
		log.Error().Err(err).Msg("service: saved policy unusable; starting with every control off")
	}
	if p == nil {
		p = &policy.Policy{APIVersion: policy.APIVersion, Kind: policy.Kind, Name: "none"}
		p.Normalize()
		version, raw = "", nil
	}
	if err := r.applyPolicy(ctx, version, p, raw, false); err != nil {
		log.Error().Err(err).Msg("service: saved policy failed to apply")
	}
	version = r.polVersion.Load().(string) // what runs: "" when the saved one failed to apply
	r.emit(ctx, "agent.started", event.Info, startedAttrs(version, r.spool.Previous()))
	server, servers := r.serverInUse()
	log.Info().Str("agent", r.id.State.AgentID).Str("server", server).Strs("servers", servers).
		Str("policy_version", version).Int("controls", len(r.controls)).Msg("mamori-agent running")

	ctlCtx, stopControls := context.WithCancel(context.Background())
	upCtx, stopUplink := context.WithCancel(context.Background())
	var ctlWG, upWG sync.WaitGroup
	for _, c := range r.controls {
		ctlWG.Add(1)
		go func() { defer ctlWG.Done(); r.superviseControl(ctlCtx, c) }()
	}
	r.shipper = &uplink.Shipper{Client: r.id.HTTPClient(30 * time.Second), Servers: r.servers,
		Queue: r.spool, Log: log}
	ps := &uplink.PolicySync{Client: r.id.HTTPClient(uplink.PolicyWait + 30*time.Second), Servers: r.servers,
		Log: log, Version: version,
		Apply: func(ctx context.Context, v string, p *policy.Policy, raw []byte) error {
			return r.applyPolicy(ctx, v, p, raw, true)
		},
		Rejected: r.policyRejected}
	for _, f := range []func(context.Context){
		func(ctx context.Context) { _ = r.shipper.Run(ctx) },
		func(ctx context.Context) { _ = ps.Run(ctx) },
		r.statusLoop,
		r.renewLoop,
	} {
		upWG.Add(1)
		go func() { defer upWG.Done(); f(upCtx) }()
	}
	for _, f := range []func(context.Context){r.heartbeatLoop, r.inventoryLoop, r.testEmitter} {
		ctlWG.Add(1)
		go func() { defer ctlWG.Done(); f(ctlCtx) }()
	}

	<-ctx.Done()
	log.Info().Msg("mamori-agent stopping")
	stopControls()
	ctlWG.Wait()
	r.emit(context.Background(), "agent.stopping", event.Info, event.Attrs{"uptime_s": int64(time.Since(r.started).Seconds())})
	r.finalShip(finalShipWait)
	stopUplink()
	upWG.Wait()
	r.writeStatus(false)
	return nil
}

// finalShipWait bounds how long a stopping agent (a service stop, an
// uninstall) keeps shipping; Windows waits 20 s for a service to stop.
const finalShipWait = 10 * time.Second

// finalShip lets the shipper send what is spooled for up to max, unless the
// server is unreachable already, and says what it leaves behind.
func (r *Runtime) finalShip(max time.Duration) {
	deadline := time.Now().Add(max)
	for r.spool.Stats().Depth > 0 && time.Now().Before(deadline) && r.shipper != nil && r.shipper.Failing() == "" {
		time.Sleep(50 * time.Millisecond)
	}
	if d := r.spool.Stats().Depth; d > 0 {
		r.opt.Log.Warn().Uint64("unshipped", d).Str("spool", filepath.Join(r.opt.StateDir, FileSpool)).
			Msg("service: stopping with events not yet shipped; they stay in the spool and are sent after the next start")
	} else {
		r.opt.Log.Info().Msg("service: every event shipped")
	}
}

// startedAttrs describe a start and the agent's last event before it, so
// the server can record the outage between the two.
func startedAttrs(version string, prev spool.Previous) event.Attrs {
	a := event.Attrs{"policy_version": version, "pid": os.Getpid()}
	if prev.Seq > 0 {
		a["previous_seq"] = prev.Seq
		a["previous_type"] = prev.Type
		if !prev.Time.IsZero() {
			a["previous_time"] = prev.Time.UTC().Format(time.RFC3339Nano)
		}
		a["clean_stop"] = prev.Type == "agent.stopping"
	}
	return a
}

// applyPolicy hands p to every control. If one refuses, those that took it
// get the previous policy back, so the agent never runs half of a policy.
func (r *Runtime) applyPolicy(ctx context.Context, version string, p *policy.Policy, raw []byte, report bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var failed error
	var done []controls.Control
	for _, c := range r.controls {
		if err := c.Apply(ctx, p); err != nil {
			failed = fmt.Errorf("service: control %s: %w", c.Name(), err)
			break
		}
		done = append(done, c)
	}
	if failed != nil {
		if r.policy != nil {
			for _, c := range done {
				if err := c.Apply(ctx, r.policy); err != nil {
					r.opt.Log.Error().Err(err).Str("control", c.Name()).Msg("service: previous policy no longer applies")
				}
			}
		}
		r.polFailed.Store(&PolicyFailure{Version: version, Name: p.Name, Error: failed.Error(), At: time.Now().UTC()})
		if report {
			r.opt.Log.Error().Err(failed).Str("version", version).Msg("service: policy failed; previous kept")
			r.emit(ctx, "agent.policy_failed", event.Warning, event.Attrs{"version": version, "name": p.Name, "error": failed.Error()})
			r.writeStatus(true) // status shows the refusal at once
		}
		return failed
	}
	r.policy = p
	r.polVersion.Store(version)
	r.polFailed.Store(nil)
	if list, err := uplink.ParseServers(strings.Join(p.Controls.Agent.Servers, ",")); err == nil && r.servers != nil &&
		!slices.Equal(list, r.servers.URLs()) {
		r.servers.Set(list)
		if err := uplink.SaveServers(r.opt.StateDir, list); err != nil {
			r.opt.Log.Warn().Err(err).Msg("service: server list from the policy not saved; it applies until restart")
		}
		r.opt.Log.Info().Strs("servers", list).Msg("service: server list from the policy")
	}
	if hb := p.Controls.Agent.Heartbeat.D(); hb > 0 && int64(hb) != r.heartbeat.Load() {
		r.heartbeat.Store(int64(hb))
		select {
		case r.hbChanged <- struct{}{}:
		default:
		}
	}
	if !report {
		return nil
	}
	if raw != nil {
		if err := uplink.SavePolicy(r.opt.StateDir, version, raw); err != nil {
			r.opt.Log.Error().Err(err).Msg("service: policy applied but not saved; the previous one will apply at next boot")
		}
	}
	r.writeStatus(true) // status shows the new version at once
	r.opt.Log.Info().Str("version", version).Str("name", p.Name).Msg("service: policy applied")
	r.emit(ctx, "agent.policy_applied", event.Info, event.Attrs{"version": version, "name": p.Name})
	return nil
}

// policyRejected reports a policy from the server that does not parse; the
// controls keep the previous one.
func (r *Runtime) policyRejected(ctx context.Context, version string, err error) {
	r.opt.Log.Error().Err(err).Str("version", version).Msg("service: policy from server rejected")
	r.emit(ctx, "agent.policy_failed", event.Warning, event.Attrs{"version": version, "error": err.Error()})
	r.polFailed.Store(&PolicyFailure{Version: version, Error: err.Error(), At: time.Now().UTC()})
	r.writeStatus(true)
}

// serverInUse is the server the shipper and policy sync use now and the
// list they fail over in; tests may run without a list.
func (r *Runtime) serverInUse() (string, []string) {
	if r.servers == nil {
		return r.id.State.Server, nil
	}
	return r.servers.Current(), r.servers.URLs()
}

// superviseControl runs a control and restarts it with backoff when Run
// fails; a control that returns nil before ctx is done is done.
func (r *Runtime) superviseControl(ctx context.Context, c controls.Control) {
	b := uplink.Backoff{Base: time.Second, Max: 5 * time.Minute}
	for n := 0; ; n++ {
		err := runControl(ctx, c)
		if ctx.Err() != nil || err == nil {
			return
		}
		r.opt.Log.Error().Err(err).Str("control", c.Name()).Int("restarts", n).Msg("service: control failed; restarting")
		r.emit(ctx, "agent.control_failed", event.Warning, event.Attrs{"name": c.Name(), "error": err.Error(), "restarts": n})
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.Delay(n)):
		}
	}
}

// runControl turns a panic in a control into an error so one control cannot
// take the agent down.
func runControl(ctx context.Context, c controls.Control) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return c.Run(ctx)
}

func (r *Runtime) heartbeatLoop(ctx context.Context) {
	for {
		t := time.NewTimer(time.Duration(r.heartbeat.Load()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.hbChanged:
			t.Stop()
			continue
		case <-t.C:
		}
		u, err := host.Self(ctx)
		if err != nil {
			r.opt.Log.Debug().Err(err).Msg("service: self usage")
		}
		st := r.spool.Stats()
		r.emit(ctx, "agent.heartbeat", event.Info, event.Attrs{
			"cpu_percent": math.Round(u.CPUPercent*100) / 100, "rss_bytes": u.RSS,
			"spool_depth": st.Depth, "uptime": int64(time.Since(r.started).Seconds()),
			"policy_version": r.polVersion.Load().(string)})
	}
}

// inventoryLoop reports the inventory at start, every 6 h, and when it
// changes (checked every 10 min, ignoring uptime).
func (r *Runtime) inventoryLoop(ctx context.Context) {
	var last []byte
	var lastSent time.Time
	for {
		inv, err := host.Collect(ctx)
		if err == nil {
			inv.UptimeSeconds = 0 // changes always; not a reason to report
			key, _ := json.Marshal(inv)
			if string(key) != string(last) || time.Since(lastSent) >= inventoryEvery {
				var attrs event.Attrs
				full, _ := host.Collect(ctx)
				b, _ := json.Marshal(full)
				_ = json.Unmarshal(b, &attrs)
				r.emit(ctx, "agent.inventory", event.Info, attrs)
				last, lastSent = key, time.Now()
			}
		} else if ctx.Err() == nil {
			r.opt.Log.Warn().Err(err).Msg("service: inventory")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(inventoryCheck):
		}
	}
}

// testEmitter produces load for tests when EnvEmitRate is set. Each tick's
// events are emitted concurrently, as several controls would, so the spool
// can commit them together.
func (r *Runtime) testEmitter(ctx context.Context) {
	rate, _ := strconv.Atoi(os.Getenv(EnvEmitRate))
	if rate <= 0 {
		return
	}
	r.opt.Log.Warn().Int("rate", rate).Msg("service: test event generator on (" + EnvEmitRate + ")")
	ticks := min(rate, 100)
	per := rate / ticks
	tick := time.NewTicker(time.Second / time.Duration(ticks))
	defer tick.Stop()
	n := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wg.Wait() // a slow disk slows the generator instead of piling up goroutines
		for range per {
			n++
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				err := r.spool.Emit(ctx, event.Event{Control: "agent", Type: "agent.test", Severity: event.Info,
					Attrs: event.Attrs{"n": n}})
				if err != nil && ctx.Err() == nil {
					r.opt.Log.Warn().Err(err).Msg("service: test event")
				}
			}(n)
		}
	}
}

func (r *Runtime) statusLoop(ctx context.Context) {
	for {
		r.writeStatus(true)
		select {
		case <-ctx.Done():
			return
		case <-time.After(statusEvery):
		}
	}
}

func (r *Runtime) writeStatus(running bool) {
	st := r.spool.Stats()
	server, servers := r.serverInUse()
	s := Status{Enrolled: true, AgentID: r.id.State.AgentID, Server: server, Servers: servers, Running: running,
		PID: os.Getpid(), UpdatedAt: time.Now().UTC(), SpoolDepth: st.Depth, LastSeq: st.LastSeq,
		LastAckedSeq: st.AckedSeq, PolicyVersion: r.polVersion.Load().(string), PolicyFailed: r.polFailed.Load(),
		Controls: map[string]controls.Status{}}
	if r.shipper != nil {
		s.Uplink = r.shipper.Failing()
	}
	for _, c := range r.controls {
		s.Controls[c.Name()] = c.Status()
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	if err := uplink.WriteFileAtomic(filepath.Join(r.opt.StateDir, FileStatus), append(b, '\n')); err != nil {
		r.opt.Log.Warn().Err(err).Msg("service: status file")
	}
}
