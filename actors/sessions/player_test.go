package sessions

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/actors/checkpoint"
	"github.com/fdfwd/teleport-event-handler/actors/inflight/inflighttest"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

// handStream serves one recording whose events the test hands over one by
// one, then ends it.
type handStream struct {
	events chan *auditlogpb.EventUnstructured
}

func (h *handStream) StreamUnstructuredSessionEvents(ctx context.Context, _ string, _ int64) (chan *auditlogpb.EventUnstructured, chan error) {
	return h.events, make(chan error)
}

func (h *handStream) send(t *testing.T, sid string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		st, err := structpb.NewStruct(map[string]any{"event": "session.data", "sid": sid, "ei": float64(i)})
		require.NoError(t, err)
		select {
		case h.events <- &auditlogpb.EventUnstructured{Type: "session.data", Index: int64(i), Id: fmt.Sprintf("%s-%d", sid, i), Unstructured: st}:
		case <-time.After(5 * time.Second):
			t.Fatalf("the player did not read event %d", i)
		}
	}
}

// A stream that ends while the player is draining, after events it had not
// handed out yet, must not count as finished: the recording stays, at the
// index after what was confirmed, and the rest is streamed on the next
// start.
func TestAStreamThatEndsDuringTheDrainIsNotFinished(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	store := storetest.Open(t)
	rec := persistence.Recording{ID: "s1", Seq: 1, Registered: time.Now(), UploadTime: time.Now()}
	require.NoError(t, store.Apply(persistence.RecordingWrites(rec)))

	stream := &handStream{events: make(chan *auditlogpb.EventUnstructured)}
	pool := inflighttest.NewPool()
	ckpt := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: store}))
	poolPID := system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return pool }))
	d := Deps{Sessions: stream, Store: store, Checkpoint: ckpt, Pool: poolPID, URL: "https://fluentd.test/session",
		Window: 32, Log: zerolog.Nop(), Metrics: metrics.New()}

	// The player, behind a gate that holds its drain until the stream has
	// ended: the stream's last events and its end are then in the mailbox
	// behind the drain.
	gate, streamDone := make(chan struct{}), make(chan (<-chan struct{}), 1)
	done, players := make(chan *playerDone, 1), make(chan *actor.PID, 1)
	system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			p := &player{Deps: New(d).Deps, rec: rec}
			players <- ctx.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
				if _, ok := ctx.Message().(*drain); ok {
					streamDone <- p.stream.Done()
					<-gate
				}
				p.Receive(ctx)
			}))
		case *playerDone:
			ctx.Stop(m.pid) // as the manager does
			done <- m
		}
	}))
	player := <-players

	stream.send(t, "s1", 0, 5)
	require.Eventually(t, func() bool { return pool.Events() == 5 }, 5*time.Second, time.Millisecond)
	system.Root.Send(player, &drain{})
	ended := <-streamDone
	stream.send(t, "s1", 5, 10)
	close(stream.events)
	<-ended // the stream's end is posted
	close(gate)

	select {
	case m := <-done:
		require.Equal(t, drained, m.outcome)
	case <-time.After(5 * time.Second):
		t.Fatal("the player did not report")
	}
	got, ok, err := store.Recording("s1")
	require.NoError(t, err)
	require.True(t, ok, "the recording was removed, with events 5 to 9 never sent")
	require.EqualValues(t, pool.Events(), got.Index, "resumes after what was confirmed")
}

// countingStream counts the streams opened.
type countingStream struct {
	mu    sync.Mutex
	calls int
}

func (c *countingStream) StreamUnstructuredSessionEvents(context.Context, string, int64) (chan *auditlogpb.EventUnstructured, chan error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	return make(chan *auditlogpb.EventUnstructured), make(chan error)
}

// A player restarted after its recording's final checkpoint was committed
// (it failed before the Saved arrived) finds the recording gone: it was
// sent, and is not sent again from the manager's older copy.
func TestAPlayerWhoseRecordingIsGoneReportsItSent(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	store := storetest.Open(t)
	stream := &countingStream{}
	d := New(Deps{Sessions: stream, Store: store, Log: zerolog.Nop()}).Deps
	done := make(chan *playerDone, 1)
	system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch m := ctx.Message().(type) {
		case *actor.Started:
			ctx.Spawn(playerProps(d, persistence.Recording{ID: "gone", Seq: 1}, 7))
		case *playerDone:
			ctx.Stop(m.pid) // as the manager does
			done <- m
		}
	}))
	select {
	case m := <-done:
		require.Equal(t, finished, m.outcome)
		require.EqualValues(t, 7, m.epoch)
	case <-time.After(5 * time.Second):
		t.Fatal("the player did not report")
	}
	stream.mu.Lock()
	defer stream.mu.Unlock()
	require.Zero(t, stream.calls, "streamed a recording that is sent already")
}
