package root_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/root"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/tests/await"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

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

func startRoot(t *testing.T, policy supervisor.Policy, children ...root.Child) (*actor.ActorSystem, *root.Tree, *supervisor.Strategy) {
	t.Helper()
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	strategy := supervisor.New(policy, zerolog.Nop())
	tree, err := root.Start(system, root.Spec{
		Children: children, Strategy: strategy, Log: zerolog.Nop(), DrainTimeout: time.Second,
	})
	require.NoError(t, err)
	return system, tree, strategy
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	return await.Recv(t, done, 10*time.Second, "root did not stop")
}

func TestChildThatExhaustsItsBudgetStopsTheTreeWithAnError(t *testing.T) {
	var starts, failures atomic.Int32
	failures.Store(1 << 20)
	rec := &recorder{}
	clock := clockwork.NewFakeClock()
	policy := supervisor.Policy{InitialDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Budget: 3, Window: time.Minute, Clock: clock}
	system, tree, strategy := startRoot(t, policy,
		root.Child{Name: "first", Props: rec.props("first")},
		root.Child{Name: "flaky", Props: actor.PropsFromProducer(func() actor.Actor {
			return &flaky{starts: &starts, failures: &failures}
		})},
		root.Child{Name: "last", Props: rec.props("last")},
	)
	child := root.PID(system, "flaky")
	require.Eventually(t, func() bool { return starts.Load() == 1 }, 5*time.Second, time.Millisecond)
	for i := range 3 {
		system.Root.Send(child, &boom{})
		require.Eventually(t, func() bool { return strategy.Waiting() == 1 }, 5*time.Second, time.Millisecond, "failure %d", i+1)
		clock.Advance(time.Second)
		require.Eventually(t, func() bool { return starts.Load() == int32(i+2) }, 5*time.Second, time.Millisecond)
	}
	system.Root.Send(child, &boom{}) // the 4th failure within the window: over the budget
	err := wait(t, tree.Done())
	require.ErrorIs(t, err, root.ErrGaveUp)
	require.Contains(t, err.Error(), "flaky failed 4 times")
	require.Contains(t, err.Error(), "injected failure")
	require.Equal(t, int32(4), starts.Load(), "one start and three restarts")
	// The others are stopped in reverse order of their start.
	rec.mu.Lock()
	require.Equal(t, []string{"last", "first"}, rec.stopped)
	rec.mu.Unlock()
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
	system, tree, _ := startRoot(t, supervisor.Default,
		root.Child{Name: "a", Props: rec.props("a")},
		root.Child{Name: "b", Props: rec.props("b")},
		root.Child{Name: "drainer", Props: drainer, Drain: true},
	)
	system.Root.Send(tree.PID(), &messages.Shutdown{Reason: "test"})
	require.NoError(t, wait(t, tree.Done()))
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
	_, tree, _ := startRoot(t, supervisor.Default,
		root.Child{Name: "reader", Props: finisher("reader", errors.New("2 chunks parked")), Drain: true, Finishes: true},
		root.Child{Name: "tap", Props: finisher("tap", nil), Drain: true, Finishes: true},
	)
	err := wait(t, tree.Done())
	require.EqualError(t, err, "caught up, but not everything was delivered: 2 chunks parked")
	require.ErrorIs(t, err, root.ErrLeftUndone)
	select {
	case <-drained:
	default:
		t.Fatal("the reader was not drained")
	}
}

// Siblings are wired by name: a child's PID is known before it is spawned,
// and Wait stops the tree in order when asked.
func TestSiblingsAreWiredByName(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	got := make(chan string, 1)
	echo := root.PID(system, "echo")
	tree, err := root.Start(system, root.Spec{Strategy: supervisor.New(supervisor.Default, zerolog.Nop()), Log: zerolog.Nop(),
		Children: []root.Child{
			{Name: "echo", Props: actor.PropsFromFunc(func(ctx actor.Context) {
				if s, ok := ctx.Message().(string); ok {
					got <- s
				}
			})},
			{Name: "caller", Props: actor.PropsFromFunc(func(ctx actor.Context) {
				if _, ok := ctx.Message().(*actor.Started); ok {
					ctx.Send(echo, "hello")
				}
			})},
		}})
	require.NoError(t, err)
	require.Equal(t, "hello", await.Recv(t, got, 5*time.Second, "the message to the sibling did not arrive"))
	stop := make(chan struct{})
	close(stop)
	finished, err := tree.Wait(stop, 5*time.Second)
	require.NoError(t, err)
	require.False(t, finished, "stopped, not finished")
}
