package pool_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/pool"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/jsonhttp"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func TestMain(m *testing.M) { leaktest.MainIdleConns(m) }

type fixture struct {
	pki *testpki.Bundle
	rcv *fluentdsrv.Receiver
	dl  *persistence.DeadLetters
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	rcv, pki := fluentdsrv.StartForTest(t)
	return &fixture{pki: pki, rcv: rcv, dl: persistence.NewDeadLetters(t.TempDir())}
}

func (f *fixture) client(t *testing.T, conns int) *jsonhttp.Transport {
	t.Helper()
	cfg, err := wire.LoadCredentials(f.pki.FluentdCAFile, f.pki.FluentdClientCertFile, f.pki.FluentdClientKeyFile)
	require.NoError(t, err)
	c := jsonhttp.New(cfg, conns)
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

// A pool that fails loses nothing: what it queued and what its connections
// held is sent after its restart, and every delivery is answered, each
// event arriving at least once and at most twice.
func TestPoolRestartLosesNothing(t *testing.T) {
	f := newFixture(t)
	t.Cleanup(faults.Reset)
	f.rcv.SetLatency(2 * time.Millisecond)
	faults.Arm("pool", 3)
	got := batchRun{f: f, deps: pool.Deps{Batch: 5, MaxConnections: 2}, spacing: 100 * time.Microsecond}.deliver(t, 200, 30*time.Second)
	require.Len(t, got, 200)
	require.Equal(t, 3, faults.Injected("pool"))
	byUID := f.rcv.CountByUID()
	require.Len(t, byUID, 200)
	for uid, c := range byUID {
		require.LessOrEqual(t, c, 2, uid)
	}
}

// A receiver that refuses service (403 from a proxy in front of Fluentd,
// say) refuses whatever the events: nothing is dead-lettered, the events
// wait, readiness turns red at once naming the status and the URL, and
// everything is delivered once the refusal ends.
func TestRefusalIsRetriedNeverDeadLettered(t *testing.T) {
	f := newFixture(t)
	f.rcv.FailFirst(1<<30, 403)
	m := metrics.New()
	m.Health.SetRunning(true)
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if ok, reason := m.Health.Ready(); !ok {
				if strings.Contains(reason, "403") && !strings.Contains(reason, f.rcv.URL()) {
					f.rcv.FailFirst(0, 0) // readiness told; the refusal ends
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2, Batch: 5, Metrics: m}}.deliver(t, 20, 30*time.Second)
	for seq, d := range got {
		require.Equal(t, messages.Sent, d.Outcome, seq)
	}
	requireOnce(t, f, 20)
	_, err := os.Stat(f.dl.Path())
	require.ErrorIs(t, err, os.ErrNotExist, "a refusal made a dead letter")
	require.Positive(t, f.rcv.Statuses()[403])
	ok, reason := m.Health.Ready()
	require.True(t, ok, reason)
}

// At its limit the dead-letter file takes no more letters, and loses none:
// the rejected event waits (unanswered, so its stream pauses), readiness is
// red naming the file, and once the operator has moved the file away the
// event is dead-lettered and the stream goes on.
func TestFullDeadLetterFilePausesTheEvent(t *testing.T) {
	f := newFixture(t)
	f.dl.SetLimit(400) // room for one letter
	f.rcv.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == "ev-3" || r["uid"] == "ev-12" })
	m := metrics.New()
	m.Health.SetRunning(true)
	moved := make(chan struct{})
	go func() {
		defer close(moved)
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if ok, reason := m.Health.Ready(); !ok && strings.Contains(reason, "dead-letter file is full") && !strings.Contains(reason, f.dl.Path()) {
				_ = os.Rename(f.dl.Path(), f.dl.Path()+".handled")
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2, Metrics: m}}.deliver(t, 20, 30*time.Second)
	<-moved
	require.Equal(t, messages.DeadLettered, got[3].Outcome)
	require.Equal(t, messages.DeadLettered, got[12].Outcome)
	requireOnce(t, f, 18)
	first, err := os.ReadFile(f.dl.Path() + ".handled")
	require.NoError(t, err)
	second, err := os.ReadFile(f.dl.Path())
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(first), "\n"))
	require.Equal(t, 1, strings.Count(string(second), "\n"))
	require.Contains(t, string(first)+string(second), `"event_id":"ev-3"`)
	require.Contains(t, string(first)+string(second), `"event_id":"ev-12"`)
	ok, reason := m.Health.Ready()
	require.True(t, ok, reason)
}

// A drain asked of a pool that fails (here on the Drain itself) is
// answered by its next incarnation: the stop does not wait out its drain
// timeout.
func TestPoolRestartStillAnswersTheDrain(t *testing.T) {
	f := newFixture(t)
	t.Cleanup(faults.Reset)
	system := actor.NewActorSystem()
	defer system.Shutdown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pid := system.Root.Spawn(pool.Props(pool.Deps{Transport: f.client(t, 1), DeadLetters: f.dl, MaxConnections: 1, Ctx: ctx, Log: zerolog.Nop()}))
	faults.Arm("pool", 1)
	res, err := system.Root.RequestFuture(pid, &messages.Drain{}, 5*time.Second).Result()
	require.NoError(t, err, "the drain was not answered")
	require.IsType(t, &messages.Drained{}, res)
	require.Equal(t, 1, faults.Injected("pool"))
}
