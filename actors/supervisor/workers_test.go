package supervisor_test

import (
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
)

// Every run scheduled runs, on workers that are reused between runs; once
// closed, no worker is left.
func TestWorkersRunEverythingAndEndWhenClosed(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	w := supervisor.NewWorkers(supervisor.DefaultThroughput)
	system := actor.NewActorSystem()
	var mu sync.Mutex
	got := 0
	done := make(chan struct{})
	const n = 5000
	pid := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(int); ok {
			mu.Lock()
			if got++; got == n {
				close(done)
			}
			mu.Unlock()
		}
	}, actor.WithDispatcher(w)))
	for i := range n {
		system.Root.Send(pid, i)
		if i%100 == 0 {
			time.Sleep(time.Millisecond) // the mailbox runs dry: runs go to idle workers
		}
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%d of %d messages handled", got, n)
	}
	require.Equal(t, supervisor.DefaultThroughput, w.Throughput())
	system.Shutdown()
	w.Close()
	w.Close() // twice is harmless
}
