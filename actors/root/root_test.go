package root_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fdfwd/teleport-event-handler/actors/root"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/messages"
)

func TestMain(m *testing.M) {
	// protoactor's dead-letter throttle keeps a timer goroutine for a
	// second after a message reaches a stopped actor; it ends by itself.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
}

type boom struct{}

// flaky panics on every boom while failures remain, counting its starts.
type flaky struct {
	starts   *atomic.Int32
	failures *atomic.Int32
}

func (f *flaky) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		f.starts.Add(1)
	case *boom:
		if f.failures.Add(-1) >= 0 {
			panic(errors.New("injected failure"))
		}
	}
}

// recorder remembers the order in which children stop.
type recorder struct {
	mu      sync.Mutex
	stopped []string
}

func (r *recorder) props(name string) *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Stopping); ok {
			r.mu.Lock()
			r.stopped = append(r.stopped, name)
			r.mu.Unlock()
		}
	})
}

func startRoot(t *testing.T, policy supervisor.Policy, children func() []root.Child) (*actor.ActorSystem, *actor.PID, <-chan error, *supervisor.Strategy) {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	strategy := supervisor.New(policy, zerolog.Nop())
	done := make(chan error, 1)
	pid, err := system.Root.SpawnNamed(root.Props(root.Spec{
		Children: children, Strategy: strategy, Log: zerolog.Nop(), Done: done, DrainTimeout: time.Second,
	}), "root")
	require.NoError(t, err)
	return system, pid, done, strategy
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("root did not stop")
		return nil
	}
}

func TestRestartsAFailingChildWithBackoff(t *testing.T) {
	var starts, failures atomic.Int32
	failures.Store(3)
	bound := make(chan *actor.PID, 1)
	policy := supervisor.Policy{InitialDelay: 20 * time.Millisecond, MaxDelay: time.Second, Budget: 5, Window: time.Minute}
	system, pid, done, strategy := startRoot(t, policy, func() []root.Child {
		return []root.Child{{Name: "flaky", Props: actor.PropsFromProducer(func() actor.Actor {
			return &flaky{starts: &starts, failures: &failures}
		}), Bind: func(p *actor.PID) { bound <- p }}}
	})
	child := <-bound
	var mu sync.Mutex
	var delays []time.Duration
	strategy.Observe(func(d supervisor.Decision) {
		mu.Lock()
		delays = append(delays, d.Delay)
		mu.Unlock()
	})
	for range 3 {
		system.Root.Send(child, &boom{})
		time.Sleep(200 * time.Millisecond)
	}
	require.Eventually(t, func() bool { return starts.Load() == 4 }, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.Len(t, delays, 3)
	// Jitter keeps each delay within [d/2, d] of the nominal 20, 40, 80ms.
	for i, d := range delays {
		nominal := policy.Backoff().Nominal(i + 1)
		require.GreaterOrEqual(t, d, nominal/2)
		require.LessOrEqual(t, d, nominal)
	}
	mu.Unlock()

	system.Root.Send(pid, &messages.Shutdown{Reason: "test"})
	require.NoError(t, wait(t, done))
}

func TestChildThatExhaustsItsBudgetStopsTheTreeWithAnError(t *testing.T) {
	var starts, failures atomic.Int32
	failures.Store(1 << 20)
	rec := &recorder{}
	bound := make(chan *actor.PID, 1)
	policy := supervisor.Policy{InitialDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Budget: 3, Window: time.Minute}
	system, _, done, _ := startRoot(t, policy, func() []root.Child {
		return []root.Child{
			{Name: "first", Props: rec.props("first")},
			{Name: "flaky", Props: actor.PropsFromProducer(func() actor.Actor {
				return &flaky{starts: &starts, failures: &failures}
			}), Bind: func(p *actor.PID) { bound <- p }},
			{Name: "last", Props: rec.props("last")},
		}
	})
	child := <-bound
	go func() {
		for range 20 {
			system.Root.Send(child, &boom{})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	err := wait(t, done)
	require.ErrorIs(t, err, root.ErrGaveUp)
	require.Contains(t, err.Error(), "flaky failed 4 times")
	require.Contains(t, err.Error(), "injected failure")
	require.Equal(t, int32(4), starts.Load(), "one start and three restarts")
	// The others are stopped in reverse order of their start.
	rec.mu.Lock()
	require.Equal(t, []string{"last", "first"}, rec.stopped)
	rec.mu.Unlock()
	time.Sleep(50 * time.Millisecond) // let the sender goroutine finish
}

func TestShutdownDrainsBeforeStoppingInReverseOrder(t *testing.T) {
	rec := &recorder{}
	drained := make(chan struct{})
	drainer := actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *messages.Drain:
			close(drained)
			ctx.Respond(&messages.Drained{})
		case *actor.Stopping:
			select {
			case <-drained:
			default:
				panic("stopped before drained")
			}
			rec.mu.Lock()
			rec.stopped = append(rec.stopped, "drainer")
			rec.mu.Unlock()
		}
	})
	system, pid, done, _ := startRoot(t, supervisor.Default, func() []root.Child {
		return []root.Child{
			{Name: "a", Props: rec.props("a")},
			{Name: "b", Props: rec.props("b")},
			{Name: "drainer", Props: drainer, Drain: true},
		}
	})
	system.Root.Send(pid, &messages.Shutdown{Reason: "test"})
	require.NoError(t, wait(t, done))
	rec.mu.Lock()
	require.Equal(t, []string{"drainer", "b", "a"}, rec.stopped)
	rec.mu.Unlock()
}

// Children that finish with work left undone make the exit status, once
// each, and still drain as in any orderly stop.
func TestCaughtUpWithAnErrorDrainsAndReturnsIt(t *testing.T) {
	drained := make(chan struct{})
	finisher := func(name string, err error) *actor.Props {
		return actor.PropsFromFunc(func(ctx actor.Context) {
			switch ctx.Message().(type) {
			case *actor.Started:
				for range 2 { // a child that restarted reports again
					ctx.Send(ctx.Parent(), &messages.CaughtUp{Name: name, Err: err})
				}
			case *messages.Drain:
				if name == "reader" {
					close(drained)
				}
				ctx.Respond(&messages.Drained{})
			}
		})
	}
	_, _, done, _ := startRoot(t, supervisor.Default, func() []root.Child {
		return []root.Child{
			{Name: "reader", Props: finisher("reader", errors.New("2 chunks parked")), Drain: true, Finishes: true},
			{Name: "tap", Props: finisher("tap", nil), Drain: true, Finishes: true},
		}
	})
	err := wait(t, done)
	require.EqualError(t, err, "2 chunks parked")
	select {
	case <-drained:
	default:
		t.Fatal("the reader was not drained")
	}
}

func TestPolicyDelayIsCappedExponential(t *testing.T) {
	p := supervisor.Policy{InitialDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	var got []string
	for n := 1; n <= 6; n++ {
		got = append(got, fmt.Sprint(p.Backoff().Nominal(n)))
	}
	require.Equal(t, []string{"100ms", "200ms", "400ms", "800ms", "1s", "1s"}, got)
}
