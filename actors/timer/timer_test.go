package timer_test

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/tests/await"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

type tick struct{ n int }

type arm struct {
	d time.Duration
	n int
}

type stop struct{}

// settled is answered once the messages before it are handled.
type settled struct{}

// ticker arms its timer on request and reports the ticks it receives.
func ticker(clock clockwork.Clock, got chan<- int) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		t := &timer.Timer{Clock: clock}
		return actor.ReceiveFunc(func(ctx actor.Context) {
			switch m := timer.Message(ctx).(type) {
			case *arm:
				t.After(ctx, m.d, &tick{n: m.n})
			case *stop:
				t.Stop()
			case *settled:
				ctx.Respond(m)
			case *tick:
				got <- m.n
			case *actor.Stopping:
				t.Stop()
			}
		})
	})
}

// setup is an actor system, shut down when the test ends, a fake clock and
// a channel for the ticks.
func setup(t *testing.T) (*actor.ActorSystem, *clockwork.FakeClock, chan int) {
	system := actor.NewActorSystem()
	t.Cleanup(system.Shutdown)
	return system, clockwork.NewFakeClock(), make(chan int, 4)
}

func waiters(t *testing.T, clock *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, clock.BlockUntilContext(ctx, n))
}

func next(t *testing.T, got <-chan int) int {
	t.Helper()
	return await.Recv(t, got, 5*time.Second, "no tick")
}

func none(t *testing.T, got <-chan int) {
	t.Helper()
	select {
	case n := <-got:
		t.Fatalf("unexpected tick %d", n)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestTimerFiresOnTheClock(t *testing.T) {
	system, clock, got := setup(t)
	pid := system.Root.Spawn(ticker(clock, got))
	system.Root.Send(pid, &arm{d: time.Minute, n: 1})
	waiters(t, clock, 1)
	clock.Advance(59 * time.Second)
	none(t, got)
	clock.Advance(time.Second)
	require.Equal(t, 1, next(t, got))
	require.NoError(t, system.Root.StopFuture(pid).Wait())
}

func TestArmingAgainReplacesAndStopCancels(t *testing.T) {
	system, clock, got := setup(t)
	pid := system.Root.Spawn(ticker(clock, got))
	system.Root.Send(pid, &arm{d: time.Second, n: 1})
	system.Root.Send(pid, &arm{d: 2 * time.Second, n: 2})
	// Both armings are done before the clock moves: one waiter would also
	// be the first arming alone, and the second one, made after the
	// advance, would then be due after it.
	_, err := system.Root.RequestFuture(pid, &settled{}, 5*time.Second).Result()
	require.NoError(t, err)
	waiters(t, clock, 1)
	clock.Advance(5 * time.Second)
	require.Equal(t, 2, next(t, got), "the first arming was replaced")
	none(t, got)

	system.Root.Send(pid, &arm{d: time.Second, n: 3})
	waiters(t, clock, 1)
	// The stop is in the mailbox before anything the clock sends now.
	system.Root.Send(pid, &stop{})
	clock.Advance(time.Hour)
	none(t, got)
	require.NoError(t, system.Root.StopFuture(pid).Wait())
}

// A message already on its way when the timer is re-armed is dropped.
func TestAStaleMessageIsDropped(t *testing.T) {
	system, clock, got := setup(t)
	block := make(chan struct{})
	pid := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		t := &timer.Timer{Clock: clock}
		return actor.ReceiveFunc(func(ctx actor.Context) {
			switch m := timer.Message(ctx).(type) {
			case *arm:
				t.After(ctx, m.d, &tick{n: m.n})
			case string:
				<-block // the mailbox fills behind this
				t.After(ctx, time.Hour, &tick{n: 2})
			case *tick:
				got <- m.n
			}
		})
	}))
	system.Root.Send(pid, &arm{d: time.Second, n: 1})
	waiters(t, clock, 1)
	system.Root.Send(pid, "hold")
	clock.Advance(time.Second) // tick 1 queues behind "hold"
	close(block)
	none(t, got)
	clock.Advance(time.Hour)
	require.Equal(t, 2, next(t, got))
	require.NoError(t, system.Root.StopFuture(pid).Wait())
}
