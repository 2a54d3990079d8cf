package supervisor_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/tests/await"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// boom makes the child panic with err (an injected failure when nil).
type boom struct{ err error }

// unfixable is a failure a restart cannot fix, as a corrupt state file.
type unfixable struct{}

func (unfixable) Error() string       { return "state file is unreadable" }
func (unfixable) Unrecoverable() bool { return true }

// tree is a parent supervising one child, "flaky", that panics on boom.
type tree struct {
	system     *actor.ActorSystem
	clock      *clockwork.FakeClock
	strategy   *supervisor.Strategy
	m          *metrics.Metrics
	parent     *actor.PID
	child      chan *actor.PID
	starts     atomic.Int32
	terminated chan *actor.PID
	decisions  chan supervisor.Decision
}

func newTree(t *testing.T, p supervisor.Policy) *tree {
	t.Helper()
	tr := &tree{system: actor.NewActorSystem(), clock: clockwork.NewFakeClock(), m: metrics.New(),
		child: make(chan *actor.PID, 1), terminated: make(chan *actor.PID, 1), decisions: make(chan supervisor.Decision, 16)}
	t.Cleanup(tr.system.Shutdown)
	p.Clock = tr.clock
	kit := supervisor.Kit{Strategy: supervisor.New(p, zerolog.Nop()), Metrics: tr.m}
	tr.strategy = kit.Strategy
	tr.strategy.Observe(func(d supervisor.Decision) {
		tr.m.CountDecision(d.Kind, d.GaveUp, d.Cause)
		tr.decisions <- d
	})
	flaky := kit.Props("flaky", func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			switch m := ctx.Message().(type) {
			case *actor.Started:
				tr.starts.Add(1)
			case *boom:
				if m.err != nil {
					panic(m.err)
				}
				panic(errors.New("injected failure"))
			}
		})
	})
	tr.parent = tr.system.Root.Spawn(kit.Props("parent", func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			switch m := ctx.Message().(type) {
			case *actor.Started:
				pid, err := ctx.SpawnNamed(flaky, "flaky")
				require.NoError(t, err)
				tr.child <- pid
			case *actor.Terminated:
				tr.terminated <- m.Who
			}
		})
	}))
	return tr
}

// stopped waits until the parent sees child stop.
func (tr *tree) stopped(t *testing.T, child *actor.PID) {
	t.Helper()
	require.True(t, await.Recv(t, tr.terminated, 5*time.Second, "the parent did not see its child stop").Equal(child))
}

func (tr *tree) decision(t *testing.T) supervisor.Decision {
	t.Helper()
	return await.Recv(t, tr.decisions, 5*time.Second, "no decision")
}

func (tr *tree) waiting(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return tr.strategy.Waiting() == n }, 5*time.Second, time.Millisecond)
}

func TestARestartWaitsForItsDelayOnTheClock(t *testing.T) {
	tr := newTree(t, supervisor.Policy{InitialDelay: 100 * time.Millisecond, MaxDelay: 400 * time.Millisecond, Budget: 10, Window: time.Hour})
	child := <-tr.child
	require.Eventually(t, func() bool { return tr.starts.Load() == 1 }, 5*time.Second, time.Millisecond)
	for i, nominal := range []time.Duration{100, 200, 400, 400} {
		nominal *= time.Millisecond
		tr.system.Root.Send(child, &boom{})
		d := tr.decision(t)
		require.Equal(t, "flaky", d.Kind)
		require.Equal(t, i+1, d.Failures)
		require.False(t, d.GaveUp)
		require.GreaterOrEqual(t, d.Delay, nominal/2, "restart %d", i+1)
		require.LessOrEqual(t, d.Delay, nominal, "restart %d", i+1)
		tr.waiting(t, 1)
		tr.clock.Advance(d.Delay - time.Nanosecond)
		require.EqualValues(t, i+1, tr.starts.Load(), "restarted before its delay")
		tr.clock.Advance(time.Nanosecond)
		require.Eventually(t, func() bool { return tr.starts.Load() == int32(i+2) }, 5*time.Second, time.Millisecond)
	}
	require.EqualValues(t, 4, testutil.ToFloat64(tr.m.ActorRestarts.WithLabelValues("flaky", "error")))
	require.EqualValues(t, 4, testutil.ToFloat64(tr.m.SupervisorDecisions.WithLabelValues("flaky", "restart")))
}

func TestAChildOverItsBudgetIsStopped(t *testing.T) {
	tr := newTree(t, supervisor.Policy{InitialDelay: time.Millisecond, Budget: 2, Window: time.Hour})
	child := <-tr.child
	for i := range 2 {
		tr.system.Root.Send(child, &boom{})
		d := tr.decision(t)
		require.False(t, d.GaveUp, "failure %d", i+1)
		tr.waiting(t, 1)
		tr.clock.Advance(d.Delay)
		tr.waiting(t, 0)
	}
	tr.system.Root.Send(child, &boom{})
	d := tr.decision(t)
	require.True(t, d.GaveUp)
	require.Equal(t, 3, d.Failures)
	tr.stopped(t, child)
	got, ok := tr.strategy.GaveUp(child)
	require.True(t, ok)
	require.Equal(t, 3, got.Failures)
	require.EqualValues(t, 1, testutil.ToFloat64(tr.m.SupervisorDecisions.WithLabelValues("flaky", "stop")))
	require.EqualValues(t, 3, tr.starts.Load(), "started, then restarted twice")
}

// A failure a restart cannot fix (a corrupt or closed state file) stops the
// child at once, whatever its budget: no restarts that fail the same way.
func TestAnUnrecoverableFailureStopsTheChildAtOnce(t *testing.T) {
	tr := newTree(t, supervisor.Policy{InitialDelay: time.Millisecond, Budget: 10, Window: time.Hour})
	child := <-tr.child
	tr.system.Root.Send(child, &boom{err: fmt.Errorf("load position: %w", unfixable{})})
	d := tr.decision(t)
	require.True(t, d.GaveUp)
	require.True(t, d.Unrecoverable)
	require.Equal(t, 1, d.Failures)
	tr.stopped(t, child)
	require.Zero(t, tr.strategy.Waiting(), "a restart was scheduled")
	require.EqualValues(t, 1, tr.starts.Load(), "restarted")
}

func TestShutdownCancelsARestartThatWaits(t *testing.T) {
	tr := newTree(t, supervisor.Policy{InitialDelay: time.Minute, Budget: 10, Window: time.Hour})
	child := <-tr.child
	tr.system.Root.Send(child, &boom{})
	tr.decision(t)
	tr.waiting(t, 1)
	tr.strategy.Shutdown()
	require.Zero(t, tr.strategy.Waiting())
	// Had the restart been left waiting, the clock would run it now, on a
	// goroutine of its own.
	tr.clock.Advance(time.Hour)
	require.Never(t, func() bool { return tr.starts.Load() > 1 }, 100*time.Millisecond, time.Millisecond, "restarted after Shutdown")
	// The child is still suspended; stopping the parent stops it.
	require.NoError(t, tr.system.Root.StopFuture(tr.parent).Wait())
}

func TestAChildFailingAfterShutdownIsStopped(t *testing.T) {
	tr := newTree(t, supervisor.Policy{InitialDelay: time.Minute, Budget: 10, Window: time.Hour})
	child := <-tr.child
	tr.strategy.Shutdown()
	tr.system.Root.Send(child, &boom{})
	tr.stopped(t, child)
	require.Zero(t, tr.strategy.Waiting())
}

func TestKindIsTheSpawnName(t *testing.T) {
	for id, want := range map[string]string{
		"root/poller":                   "poller",
		"root/pool/connection-3":        "connection",
		"root/sessions/player-$1b":      "player",
		"root/export/export-reader-$2f": "export-reader",
		"root/export/$1a":               supervisor.Unnamed,
		"$5":                            supervisor.Unnamed,
		"root/lockpolicy":               "lockpolicy",
		"root/pool/connection-$12":      "connection",
		"root/sessions/player-ab":       "player-ab",
		"root/export/export-reader-":    "export-reader-",
		"checkpoint":                    "checkpoint",
	} {
		require.Equal(t, want, supervisor.Kind(actor.NewPID("nonhost", id)), id)
	}
}

func TestSpawnedSiblingsShareTheirKind(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	props := actor.PropsFromFunc(func(actor.Context) {})
	kinds := map[string]bool{}
	for range 5 {
		pid := supervisor.Spawn(system.Root, props, "export-reader")
		kinds[supervisor.Kind(pid)] = true
		require.NoError(t, system.Root.StopFuture(pid).Wait())
	}
	require.Equal(t, map[string]bool{"export-reader": true}, kinds)
}

func TestKitCountsLiveActorsAndMailboxes(t *testing.T) {
	m := metrics.New()
	system := actor.NewActorSystem()
	defer system.Shutdown()
	block := make(chan struct{})
	var crashed atomic.Bool
	var starts atomic.Int32
	props := supervisor.Kit{Metrics: m}.Props("player", func() actor.Actor {
		return actor.ReceiveFunc(func(ctx actor.Context) {
			switch msg := ctx.Message().(type) {
			case *actor.Started:
				starts.Add(1)
			case string:
				if msg == "crash" && crashed.CompareAndSwap(false, true) {
					panic("crash")
				}
				<-block
			}
		})
	})
	var pids []*actor.PID
	for range 3 {
		pids = append(pids, system.Root.Spawn(props))
	}
	live := func() float64 { return testutil.ToFloat64(m.ActorsLive.WithLabelValues("player")) }
	require.Eventually(t, func() bool { return live() == 3 }, 5*time.Second, 5*time.Millisecond)
	// A restart leaves the count alone.
	system.Root.Send(pids[1], "crash")
	require.Eventually(t, func() bool { return starts.Load() == 4 }, 5*time.Second, time.Millisecond)
	require.EqualValues(t, 3, live())
	for range 5 {
		system.Root.Send(pids[0], "work")
	}
	require.Eventually(t, func() bool { return testutil.ToFloat64(m.MailboxDepth.WithLabelValues("player")) == 5 }, 5*time.Second, 5*time.Millisecond,
		"a message counts until it is processed")
	close(block)
	for _, pid := range pids {
		require.NoError(t, system.Root.StopFuture(pid).Wait())
	}
	require.Eventually(t, func() bool { return live() == 0 }, 5*time.Second, 5*time.Millisecond)
	// A stopped actor's mailbox is drained after it stopped.
	require.Eventually(t, func() bool { return testutil.ToFloat64(m.MailboxDepth.WithLabelValues("player")) == 0 }, 5*time.Second, 5*time.Millisecond)
}
