package pool_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/pool"
	"github.com/fdfwd/teleport-event-handler/fluentd"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		// http.Transport keeps idle connections' goroutines until they time out.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

type fixture struct {
	pki *testpki.Bundle
	rcv *fluentdsrv.Receiver
	dl  *persistence.DeadLetters
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pki, err := testpki.Generate(t.TempDir())
	require.NoError(t, err)
	rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)})
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	return &fixture{pki: pki, rcv: rcv, dl: persistence.NewDeadLetters(t.TempDir())}
}

func (f *fixture) client(t *testing.T, conns int) *fluentd.HTTP {
	t.Helper()
	cfg, err := fluentd.TLSConfig(f.pki.FluentdCAFile, f.pki.FluentdClientCertFile, f.pki.FluentdClientKeyFile)
	require.NoError(t, err)
	c := fluentd.NewHTTP(cfg, conns)
	t.Cleanup(c.Close)
	return c
}

// deliver sends n deliveries through a pool of conns connections and
// returns the replies by seq.
func (f *fixture) deliver(t *testing.T, n, conns int, timeout time.Duration) map[uint64]*messages.Delivered {
	t.Helper()
	return batchRun{f: f, deps: pool.Deps{MaxConnections: conns}}.deliver(t, n, timeout)
}

func TestPoolDeliversConcurrentlyAndRetries(t *testing.T) {
	f := newFixture(t)
	f.rcv.FailFirst(5, 503)
	f.rcv.SetLatency(5 * time.Millisecond)
	got := f.deliver(t, 200, 4, 30*time.Second)
	retries := 0
	for _, d := range got {
		require.Equal(t, messages.Sent, d.Outcome)
		retries += d.Attempts - 1
	}
	// Each of the five 503s costs exactly one more attempt.
	require.Equal(t, 5, retries)
	require.Equal(t, 200, f.rcv.Count())
	for uid, c := range f.rcv.CountByUID() {
		require.Equal(t, 1, c, uid)
	}
}

func TestPoolDeadLettersPermanentRejections(t *testing.T) {
	f := newFixture(t)
	f.rcv.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == "ev-7" })
	got := f.deliver(t, 20, 2, 30*time.Second)
	require.Equal(t, messages.DeadLettered, got[7].Outcome)
	require.Equal(t, 400, got[7].Status)
	require.Equal(t, 19, f.rcv.Count())
	raw, err := os.ReadFile(f.dl.Path())
	require.NoError(t, err)
	require.Contains(t, string(raw), `"event_id":"ev-7"`)
}

// The pool announces PoolStarted on a restart, when deliveries queued in it
// are lost, and not on its first start: a requester that subscribed before
// the pool ran its Started would otherwise send everything in flight twice.
func TestPoolStartedOnlyOnRestart(t *testing.T) {
	f := newFixture(t)
	t.Cleanup(faults.Reset)
	system := actor.NewActorSystem()
	defer system.Shutdown()
	var announced atomic.Int32
	sub := system.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*messages.PoolStarted); ok {
			announced.Add(1)
		}
	})
	defer system.EventStream.Unsubscribe(sub)
	replies := make(chan *messages.Delivered, 4)
	requester := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if d, ok := ctx.Message().(*messages.Delivered); ok {
			replies <- d
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := system.Root.Spawn(pool.Props(pool.Deps{
		Transport: f.client(t, 2), DeadLetters: f.dl, MaxConnections: 2, Ctx: ctx, Log: zerolog.Nop(),
	}))
	send := func(seq uint64) {
		system.Root.Send(pool, &messages.Delivery{Seq: seq, URL: f.rcv.URL() + "/test.log",
			Body: fmt.Appendf(nil, `{"uid":"ev-%d","event":"exec"}`, seq), EventID: fmt.Sprintf("ev-%d", seq), ReplyTo: requester})
	}
	wait := func(seq uint64) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case d := <-replies:
				if d.Seq == seq {
					return
				}
			case <-deadline:
				t.Fatalf("delivery %d not settled", seq)
			}
		}
	}
	send(1)
	wait(1)
	require.Zero(t, announced.Load(), "announced on its first start")

	faults.Arm("pool", 1)
	send(2) // the pool fails on its next message: this one or a connection's
	// report; what it held is lost and requesters resend on PoolStarted.
	require.Eventually(t, func() bool { return announced.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, faults.Injected("pool"))
	send(3)
	wait(3)
	require.EqualValues(t, 1, announced.Load())
	_ = system.Root.StopFuture(pool).Wait()
}
