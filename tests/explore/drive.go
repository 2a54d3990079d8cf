package explore

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// newExplorer sets up seed's world: Teleport and the receiver behind
// proxies, the state on a tmpfs where possible, the workload.
func newExplorer(t *testing.T, binary string, p Plan) *explorer {
	e := harness.NewEnv(t, binary)
	x := &explorer{t: t, p: p, e: e, injected: map[Kind]int{}, notInjected: map[Kind]string{}}
	x.disk = x.mountDisk()
	if p.Export {
		e.Teleport.SetExport(true)
	}
	if p.SharedKey {
		e.Fluentd.SetSharedKey([]byte(sharedKey))
	}
	x.tp = harness.NewProxy(t, "teleport", e.Teleport.Addr())
	e.TeleportAddr = x.tp.Addr()
	if p.Forward {
		e.Fluentd.SetForwardFaults(x.forwardBase())
		x.rx = harness.NewProxy(t, "fluentd", strings.TrimPrefix(e.Fluentd.ForwardURL(), "forward://"))
		e.FluentdURL = "forward://" + x.rx.Addr()
	} else {
		e.Fluentd.SetBodyLimit(int64(p.Limit))
		x.rx = harness.NewProxy(t, "fluentd", strings.TrimPrefix(e.Fluentd.URL(), "https://"))
		e.FluentdURL = "https://" + x.rx.Addr()
	}
	x.want = seedWorkload(t, e, p)
	for _, why := range x.want.mayDeadLetter {
		if strings.HasPrefix(why, "rejected") {
			x.injected[Reject4xx]++
		}
	}
	return x
}

// drive runs the daemon as a service through the schedule while events
// keep coming: it carries out each step on time and, as systemd would,
// starts the daemon again when it exits, checking how it exited. Once the
// faults are over it stops the service (SIGTERM: status 0) and starts the
// last run, with --exit-on-last-event.
func (x *explorer) drive() {
	acts := x.actions()
	x.began = time.Now()
	stop := x.trickle()
	x.start(false)
	next, lastScrape := 0, time.Now()
	for next < len(acts) || time.Since(x.began) < x.p.Span {
		for next < len(acts) && acts[next].at <= time.Since(x.began) {
			x.note("%s", strings.TrimSpace(acts[next].what))
			acts[next].do()
			next++
		}
		if x.cur.proc.Exited() {
			x.exited(x.cur)
			time.Sleep(200 * time.Millisecond)
			x.start(false)
		}
		if time.Since(lastScrape) > 500*time.Millisecond {
			x.scrape(x.cur)
			lastScrape = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	ended := time.Now()
	x.note("faults over; %d events came while they lasted", x.want.live)
	x.stop(syscall.SIGTERM, "")
	// The last run delivers what is visible when it runs: the events that
	// search shows late are all visible 3 s after the last one came.
	if x.p.Late > 0 {
		time.Sleep(time.Until(ended.Add(lateDelay + 100*time.Millisecond)))
	}
	x.start(true)
}

// trickle adds events as a cluster makes them, a few a second with now and
// then a session, until the returned stop is called.
func (x *explorer) trickle() (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	r := rand.New(rand.NewPCG(x.p.Seed, 0x6c697665))
	// 20 to 100 events a second. (Up to 250 a second, with their failed
	// logins and recordings queued through outages, made a state file of
	// 1 MiB: see docs/explore.md.)
	rate := 2 + r.IntN(8) // events per 100 ms, on average
	go func() {
		defer close(finished)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			x.want.live += x.want.liveEvents(x.t, x.e, x.p, i, r.IntN(2*rate))
			if r.IntN(30) == 0 {
				x.e.AddSession(fmt.Sprintf("live-%d-%d", x.p.Seed, i), 2+r.IntN(100), time.Now())
				x.want.add("upload-" + harness.SID(fmt.Sprintf("live-%d-%d", x.p.Seed, i)))
				x.want.live++
			}
		}
	}()
	return func() { close(done); <-finished }
}

// exited checks a run that exited by itself: a service exits only for a
// fault documented as fatal (status 1: a state disk so full that the state
// file cannot be opened, Fluentd refusing the shared key at start).
func (x *explorer) exited(r *daemonRun) {
	r.exit, r.during = r.proc.ExitCode(), x.active()
	r.stopped = fmt.Sprintf("exit %d", r.exit)
	x.note("run %d exited %d", len(x.runs), r.exit)
	x.checked++
	refused := strings.Contains(r.during, string(ForwardPong)) && strings.Contains(r.proc.Output(), "shared-key handshake failed")
	if r.exit != 1 || !(x.diskFull || refused) {
		x.violate("the run ends", fmt.Sprintf("run %d, a service, exited %d with faults in force: %q; its last lines:\n%s",
			len(x.runs), r.exit, r.during, harness.Tail(r.proc.Output(), 8)))
	}
}

// bound is how long the last run may take to catch up once the faults are
// over: two minutes, more with a recording that fails for good (its ten
// attempts back off up to a minute apart).
func (x *explorer) bound() time.Duration {
	d := 2 * time.Minute
	for _, s := range x.p.Sessions {
		if s.BreakAt >= 0 {
			d = 8 * time.Minute
		}
	}
	return d
}

// finish waits for the last run to catch up and exit, and checks its exit.
func (x *explorer) finish() (exit int, line exitLine) {
	r, bound := x.cur, x.bound()
	deadline := time.Now().Add(bound)
	for !r.proc.Exited() {
		if time.Now().After(deadline) {
			x.violate("the run ends", fmt.Sprintf("the last run had not exited %s after the faults ended; its last lines:\n%s",
				bound, harness.Tail(r.proc.Output(), 12)))
			x.scrape(r)
			r.proc.Signal(syscall.SIGKILL)
			waitExit(r.proc, 10*time.Second)
			return -1, exitLine{}
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.exit = r.proc.ExitCode()
	r.stopped = fmt.Sprintf("exit %d", r.exit)
	x.note("last run exited %d", r.exit)
	line, ok := lastExitLine(r.proc.Output())
	x.checked += 2
	switch {
	case r.exit != 0 && r.exit != 3:
		x.violate("the run ends", fmt.Sprintf("the last run exited %d, not 0 or 3, with no fault in force; its last lines:\n%s",
			r.exit, harness.Tail(r.proc.Output(), 8)))
	case !ok:
		x.violate("the run ends", "the last run exited without its exit line")
	case int(line.Delivered) > x.e.Fluentd.Count()-r.rxBase:
		x.violate("nothing counted delivered that the receiver did not accept",
			fmt.Sprintf("the exit line counts %.0f delivered; the receiver accepted %d in the run", line.Delivered, x.e.Fluentd.Count()-r.rxBase))
	}
	return r.exit, line
}

// exitLine is the last line of a run of --exit-on-last-event.
type exitLine struct {
	Message      string  `json:"message"`
	Delivered    float64 `json:"delivered"`
	DeadLettered int     `json:"dead_lettered"`
}

func lastExitLine(out string) (exitLine, bool) {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l exitLine
		if json.Unmarshal([]byte(lines[i]), &l) == nil && strings.Contains(l.Message, "(--exit-on-last-event)") {
			return l, true
		}
	}
	return exitLine{}, false
}
