package explore

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// explorer runs one seed.
type explorer struct {
	t    *testing.T
	p    Plan
	e    *harness.Env
	want *expect
	// tp and rx are the proxies in front of Teleport and the receiver.
	tp, rx *harness.Proxy
	began  time.Time

	// What happened: the schedule as carried out, runs of the daemon.
	timeline    []string
	injected    map[Kind]int
	notInjected map[Kind]string
	runs        []*daemonRun
	cur         *daemonRun
	disk        bool // the state is on a tmpfs of its own
	diskFull    bool
	violations  []Violation
	checked     int // invariant checks made
	stops       int // runs stopped by a signal, each may resend its in-flight events
}

// daemonRun is one start of the daemon.
type daemonRun struct {
	proc    *harness.Proc
	metrics string
	// rxBase is what the receiver held at the start: the run cannot have
	// delivered more than the receiver got since.
	rxBase  int
	started time.Time
	// stopped is how the run ended: by a signal of the explorer, or its
	// own exit status.
	stopped string
	exit    int
	during  string // the faults in force when it exited by itself
}

// Violation is an invariant that did not hold.
type Violation struct {
	Invariant string
	Detail    string
	Events    []string // some of the events concerned
}

func (v Violation) String() string {
	s := v.Invariant + ": " + v.Detail
	if len(v.Events) > 0 {
		s += " (e.g. " + strings.Join(v.Events[:min(len(v.Events), 5)], ", ") + ")"
	}
	return s
}

func (x *explorer) must(err error) {
	x.t.Helper()
	if err != nil {
		x.t.Fatal(err)
	}
}

func (x *explorer) violate(invariant, detail string, events ...string) {
	x.violations = append(x.violations, Violation{Invariant: invariant, Detail: detail, Events: events})
}

func (x *explorer) note(format string, args ...any) {
	x.timeline = append(x.timeline, fmt.Sprintf("%6.1fs  ", time.Since(x.began).Seconds())+fmt.Sprintf(format, args...))
}

// args is a run's command line: a service's, or with last a run of
// --exit-on-last-event.
func (x *explorer) args(metrics string, last bool) []string {
	p := x.p
	mode := "search"
	if p.Export {
		mode = "export"
	}
	extra := []string{"--metrics-addr", metrics, "--lock-enabled", "--export-mode", mode, "--log-format", "json"}
	if last {
		extra = append(extra, "--exit-on-last-event")
	}
	if p.AllTypes {
		extra = append(extra, "--skip-session-types", "")
	}
	if p.Debug {
		extra = append(extra, "--debug")
	}
	if p.Forward {
		extra = append(extra, "--fluentd-max-message-kb", strconv.Itoa(p.Limit>>10))
	}
	a := x.e.Args(extra...)
	if p.Identity {
		// Reloaded every second, to meet the swaps.
		a = append(harness.WithIdentity(a, x.e.PKI.IdentityFile), "--teleport-refresh-enabled", "--teleport-refresh-interval", "1s")
	}
	return a
}

const sharedKey = "explore-shared-key"

// start starts a run of the daemon: a service, or with last a run of
// --exit-on-last-event.
func (x *explorer) start(last bool) {
	addr := harness.FreeAddr(x.t)
	r := &daemonRun{metrics: addr, rxBase: x.e.Fluentd.Count(), started: time.Now()}
	r.proc = x.e.Run(x.env(), x.args(addr, last)...)
	x.runs = append(x.runs, r)
	x.cur = r
	x.note("daemon started (run %d%s)", len(x.runs), map[bool]string{true: ", --exit-on-last-event"}[last])
}

// env is the daemon's environment: the shared key, as it is kept off the
// command line.
func (x *explorer) env() []string {
	if x.p.SharedKey {
		return []string{"FDFWD_FLUENTD_SHARED_KEY=" + sharedKey}
	}
	return nil
}

// stop signals the running daemon and waits for it; SIGTERM must stop it
// with status 0 within the drain timeout and a margin. k is the fault, if
// it is one.
func (x *explorer) stop(sig syscall.Signal, k Kind) {
	r := x.cur
	if r == nil || r.proc.Exited() {
		x.note("%s: no daemon running", k)
		return
	}
	if k != "" {
		x.injected[k]++
	}
	x.stops++
	x.scrape(r)
	r.proc.Signal(sig)
	r.stopped = k.String()
	code, ok := waitExit(r.proc, 30*time.Second)
	x.checked++
	switch {
	case !ok:
		x.violate("the run ends", fmt.Sprintf("run %d still running 30 s after %s", len(x.runs), sig))
		r.proc.Signal(syscall.SIGKILL)
		waitExit(r.proc, 10*time.Second)
	case sig == syscall.SIGTERM && code != 0 && !(code == -1 && !strings.Contains(r.proc.Output(), "starting teleport-event-handler")):
		// Before its first line the daemon has no handler yet: the signal
		// ends it, with nothing read.
		x.violate("the run ends", fmt.Sprintf("run %d ended with %s after SIGTERM, not status 0", len(x.runs), r.proc.State()))
	}
	r.exit = code
}

func (k Kind) String() string { return string(k) }

// waitExit waits up to d for p to exit, and returns its status.
func waitExit(p *harness.Proc, d time.Duration) (int, bool) {
	deadline := time.Now().Add(d)
	for !p.Exited() {
		if time.Now().After(deadline) {
			return 0, false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p.ExitCode(), true
}

// scrape checks that the daemon has counted delivered no more events than
// the receiver accepted since the run started: the metrics are read first,
// so the receiver's count can only be higher.
func (x *explorer) scrape(r *daemonRun) {
	m := harness.Scrape(r.metrics)
	if m == nil {
		return
	}
	sent := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "teleport_event_handler_events_sent_total{") {
			sent += v
		}
	}
	got := x.e.Fluentd.Count() - r.rxBase
	x.checked++
	if int(sent) > got {
		x.violate("nothing counted delivered that the receiver did not accept",
			fmt.Sprintf("run %d's metrics count %.0f events sent; the receiver accepted %d since it started", len(x.runs), sent, got))
	}
}

// active names the faults in force now.
func (x *explorer) active() string {
	now := time.Since(x.began)
	var on []string
	for _, f := range x.p.Faults {
		if f.For > 0 && f.At <= now && now < f.At+f.For {
			on = append(on, string(f.Kind))
		}
	}
	return strings.Join(on, ", ")
}

func sortActions(a []action) {
	slices.SortStableFunc(a, func(p, q action) int { return int(p.at - q.at) })
}
