package pool_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/pool"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// batchRun sends deliveries through a pool configured by deps (Client,
// DeadLetters and Ctx are filled in) and returns the replies by seq.
type batchRun struct {
	f       *fixture
	deps    pool.Deps
	urls    func(i int) string // tag path of delivery i
	spacing time.Duration      // pause between deliveries
	// until, when set, is waited for (within the timeout) after every
	// delivery is answered, before the pool is stopped.
	until func() bool
	// transport and base replace HTTP and the receiver's HTTP URL (forward);
	// body, when set, makes the body of delivery i.
	transport wire.Transport
	base      string
	body      func(i int) []byte
}

func (r batchRun) deliver(t *testing.T, n int, timeout time.Duration) map[uint64]*messages.Delivered {
	t.Helper()
	system := actor.NewActorSystem()
	defer system.Shutdown()
	var mu sync.Mutex
	got := map[uint64]*messages.Delivered{}
	all := make(chan struct{})
	requester := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		answers, ok := ctx.Message().(*messages.Answers)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range answers.Items {
			d := &answers.Items[i]
			if _, dup := got[d.Seq]; dup {
				t.Errorf("delivery %d settled twice", d.Seq)
			}
			got[d.Seq] = d
			if len(got) == n {
				close(all)
			}
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deps := r.deps
	if deps.MaxConnections == 0 {
		deps.MaxConnections = 2
	}
	deps.Transport, deps.DeadLetters, deps.Ctx, deps.Log = r.transport, r.f.dl, ctx, zerolog.Nop()
	if deps.Transport == nil {
		deps.Transport = r.f.client(t, deps.MaxConnections)
	}
	base, body := r.base, r.body
	if base == "" {
		base = r.f.rcv.URL()
	}
	if body == nil {
		body = func(i int) []byte { return fmt.Appendf(nil, `{"uid":"ev-%d","event":"exec"}`, i) }
	}
	pool := system.Root.Spawn(pool.Props(deps))
	urls := r.urls
	if urls == nil {
		urls = func(int) string { return "/test.log" }
	}
	// As a reader hands them out: several in one message, or one alone
	// when spaced.
	var run []*messages.Delivery
	for i := range n {
		run = append(run, &messages.Delivery{Seq: uint64(i), URL: base + urls(i),
			Body: body(i), EventID: fmt.Sprintf("ev-%d", i),
			Stream: metrics.Audit, Fetched: time.Now(), ReplyTo: requester})
		if r.spacing > 0 {
			system.Root.Send(pool, run[0])
			run = nil
			time.Sleep(r.spacing)
		} else if len(run) == 7 || i == n-1 {
			system.Root.Send(pool, &messages.Deliveries{Items: run})
			run = nil
		}
	}
	select {
	case <-all:
	case <-time.After(timeout):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("only %d of %d deliveries settled", len(got), n)
	}
	if r.until != nil {
		require.Eventually(t, r.until, timeout, 5*time.Millisecond)
	}
	_ = system.Root.StopFuture(pool).Wait()
	mu.Lock()
	defer mu.Unlock()
	return got
}

func requireOnce(t *testing.T, f *fixture, n int) {
	t.Helper()
	byUID := f.rcv.CountByUID()
	require.Len(t, byUID, n)
	for uid, c := range byUID {
		require.Equal(t, 1, c, uid)
	}
}

func TestBatchesGroupEventsByURL(t *testing.T) {
	f := newFixture(t)
	f.rcv.SetLatency(5 * time.Millisecond)
	m := metrics.New()
	const n = 600
	// Two URLs interleaved: every third event is a session's.
	got := batchRun{f: f, deps: pool.Deps{Batch: 20, MaxConnections: 3, Metrics: m}, urls: func(i int) string {
		if i%3 == 0 {
			return "/session.s1.log"
		}
		return "/test.log"
	}}.deliver(t, n, 30*time.Second)
	for seq, d := range got {
		require.Equal(t, messages.Sent, d.Outcome, seq)
		require.Equal(t, 200, d.Status)
	}
	requireOnce(t, f, n)
	require.Equal(t, n/3, f.rcv.CountTag("session.s1.log"))
	require.Equal(t, n-n/3, f.rcv.CountTag("test.log"))
	// Each session record went to the session URL, each audit record to
	// the audit URL.
	for _, raw := range f.rcv.Records("session.s1.log") {
		var rec struct{ UID string }
		require.NoError(t, json.Unmarshal(raw, &rec))
		var i int
		_, err := fmt.Sscanf(rec.UID, "ev-%d", &i)
		require.NoError(t, err)
		require.Zero(t, i%3, rec.UID)
	}
	// Batches of up to 20: far fewer requests than events, and none bigger.
	require.LessOrEqual(t, f.rcv.Requests(), n/5, "requests")
	require.GreaterOrEqual(t, f.rcv.Requests(), n/20)
	h := histogram(t, m, "teleport_event_handler_fluentd_batch_events")
	require.Equal(t, uint64(f.rcv.Requests()), h.GetSampleCount())
	require.Equal(t, float64(n), h.GetSampleSum())
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 20 {
			require.Equal(t, h.GetSampleCount(), b.GetCumulativeCount(), "a batch above 20 events")
		}
	}
	acks := histogram(t, m, "teleport_event_handler_fetch_to_ack_seconds")
	require.Equal(t, uint64(n), acks.GetSampleCount())
}

func TestOneEventPerPostByDefault(t *testing.T) {
	f := newFixture(t)
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2}}.deliver(t, 50, 30*time.Second)
	require.Len(t, got, 50)
	requireOnce(t, f, 50)
	require.Equal(t, 50, f.rcv.Requests())
}

func TestPartialBatchGoesAfterTheLinger(t *testing.T) {
	f := newFixture(t)
	began := time.Now()
	got := batchRun{f: f, deps: pool.Deps{Batch: 50, MaxConnections: 2, Linger: 300 * time.Millisecond}}.deliver(t, 3, 10*time.Second)
	require.Len(t, got, 3)
	require.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond, "sent before the linger")
	require.Equal(t, 1, f.rcv.Requests(), "the three events should share one POST")
	requireOnce(t, f, 3)
}

func TestFullBatchDoesNotWaitForTheLinger(t *testing.T) {
	f := newFixture(t)
	began := time.Now()
	got := batchRun{f: f, deps: pool.Deps{Batch: 10, MaxConnections: 1, Linger: time.Hour}}.deliver(t, 30, 20*time.Second)
	require.Len(t, got, 30)
	require.Less(t, time.Since(began), 20*time.Second)
	require.Equal(t, 3, f.rcv.Requests())
}

func TestBatchBodyIsCapped(t *testing.T) {
	f := newFixture(t)
	// Each body is about 32 bytes: a 100-byte cap fits 2 or 3 of them.
	got := batchRun{f: f, deps: pool.Deps{Batch: 50, MaxConnections: 1, MaxBatchBytes: 100, Linger: time.Millisecond}}.deliver(t, 30, 20*time.Second)
	require.Len(t, got, 30)
	requireOnce(t, f, 30)
	require.GreaterOrEqual(t, f.rcv.Requests(), 10)
}

func TestBatchRetriesAsAWhole(t *testing.T) {
	f := newFixture(t)
	f.rcv.FailFirst(3, 503)
	got := batchRun{f: f, deps: pool.Deps{Batch: 10, MaxConnections: 2}}.deliver(t, 100, 30*time.Second)
	retried := 0
	for _, d := range got {
		require.Equal(t, messages.Sent, d.Outcome)
		if d.Attempts > 1 {
			retried++
		}
	}
	require.Positive(t, retried)
	requireOnce(t, f, 100)
}

func TestRejectedBatchIsolatesTheBadEvent(t *testing.T) {
	f := newFixture(t)
	f.rcv.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == "ev-7" || r["uid"] == "ev-33" })
	m := metrics.New()
	got := batchRun{f: f, deps: pool.Deps{Batch: 10, MaxConnections: 2, Metrics: m}}.deliver(t, 50, 30*time.Second)
	for seq, d := range got {
		if seq == 7 || seq == 33 {
			require.Equal(t, messages.DeadLettered, d.Outcome, seq)
			require.Equal(t, 400, d.Status)
			continue
		}
		require.Equal(t, messages.Sent, d.Outcome, seq)
	}
	require.Equal(t, 48, f.rcv.Count())
	requireOnce(t, f, 48)
	// Only the two bad events are dead letters.
	require.ElementsMatch(t, []string{"ev-7", "ev-33"}, deadLetterIDs(t, f))
	require.Equal(t, 2.0, counter(t, m, "teleport_event_handler_events_dead_lettered_total"))
	require.Equal(t, 48.0, counter(t, m, "teleport_event_handler_events_sent_total"))
}

func TestConnectionPanicsLoseNoBatch(t *testing.T) {
	f := newFixture(t)
	faults.Arm("connection", 4)
	t.Cleanup(faults.Reset)
	got := batchRun{f: f, deps: pool.Deps{Batch: 8, MaxConnections: 2}, spacing: 200 * time.Microsecond}.deliver(t, 120, 30*time.Second)
	require.Len(t, got, 120)
	require.Equal(t, 4, faults.Injected("connection"))
	// Nothing lost; a connection that fails after its POST went out
	// resends at most its batch.
	byUID := f.rcv.CountByUID()
	require.Len(t, byUID, 120)
	dups := 0
	for _, c := range byUID {
		dups += c - 1
	}
	require.LessOrEqual(t, dups, 4*8)
}

func family(t *testing.T, m *metrics.Metrics, name string) *dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// histogram returns the first series of a histogram.
func histogram(t *testing.T, m *metrics.Metrics, name string) *dto.Histogram {
	t.Helper()
	return family(t, m, name).GetMetric()[0].GetHistogram()
}

// counter sums every series of a counter.
func counter(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	sum := 0.0
	for _, s := range family(t, m, name).GetMetric() {
		sum += s.GetCounter().GetValue()
	}
	return sum
}

// A connection is opened once and reused: no TLS handshake per event.
func TestConnectionsAreReused(t *testing.T) {
	pki := testpki.New(t)
	var handshakes atomic.Int64
	cfg := pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		handshakes.Add(1)
		return nil, nil
	}
	rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: cfg})
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	f := &fixture{pki: pki, rcv: rcv, dl: persistence.NewDeadLetters(t.TempDir())}
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 4}}.deliver(t, 600, 30*time.Second)
	require.Len(t, got, 600)
	require.Equal(t, 600, rcv.Requests())
	require.Positive(t, handshakes.Load())
	require.LessOrEqual(t, handshakes.Load(), int64(4), "handshakes for 600 POSTs over 4 connections")
}

// deadLetterIDs are the event IDs in the dead-letter file.
func deadLetterIDs(t *testing.T, f *fixture) []string {
	t.Helper()
	raw, err := os.ReadFile(f.dl.Path())
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var dl struct {
			EventID string `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &dl))
		ids = append(ids, dl.EventID)
	}
	return ids
}

// A receiver that rejects every event (in_http without a <parse> section
// answers 400 to each) is not a stream of bad events: after a run of
// pool.BreakerRun distinct rejections with no success between, the pool
// stops dead-lettering, takes the run's letters back out of the file,
// holds them and everything after them, and sends them all once the
// receiver accepts again.
func TestSystemicRejectionsOpenTheBreakerAndLoseNothing(t *testing.T) {
	f := newFixture(t)
	f.rcv.FailFirst(pool.BreakerRun+6, 400) // batches eat some: enough left for probes that fail
	m := metrics.New()
	m.Health.SetRunning(true)
	var sawHint atomic.Bool
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if ok, reason := m.Health.Ready(); !ok && strings.Contains(reason, "<parse>") {
				sawHint.Store(true)
			}
		}
	}()
	const n = 40
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2, Metrics: m},
		until: func() bool { return len(f.rcv.CountByUID()) == n && len(deadLetterIDs(t, f)) == 0 },
	}.deliver(t, n, 30*time.Second)
	require.Len(t, got, n)
	requireOnce(t, f, n)
	require.Empty(t, deadLetterIDs(t, f), "letters of a systemic run stay in the file")
	require.True(t, sawHint.Load(), "readiness never named the likely cause")
	ok, reason := m.Health.Ready()
	require.True(t, ok, reason)
}

// Poison events among accepted ones are dead-lettered, and only they: the
// breaker does not open.
func TestPoisonEventsAmongAcceptedOnesAreDeadLettered(t *testing.T) {
	f := newFixture(t)
	poison := map[string]bool{"ev-17": true, "ev-500": true, "ev-981": true}
	f.rcv.RejectWhere(400, func(r map[string]any) bool { id, _ := r["uid"].(string); return poison[id] })
	const n = 1000
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 4, Batch: 20}}.deliver(t, n, 60*time.Second)
	for seq, d := range got {
		want := messages.Sent
		if poison[fmt.Sprintf("ev-%d", seq)] {
			want = messages.DeadLettered
		}
		require.Equal(t, want, d.Outcome, seq)
	}
	requireOnce(t, f, n-3)
	require.ElementsMatch(t, []string{"ev-17", "ev-500", "ev-981"}, deadLetterIDs(t, f))
}

// The pool never makes more than MaxConnections requests at once, counted
// at the receiver, while its connections panic and restart with requests
// on the wire: a connection's request ends with its incarnation, before
// the next one sends.
func TestNeverMoreRequestsAtOnceThanConnections(t *testing.T) {
	f := newFixture(t)
	f.rcv.SetLatency(300 * time.Millisecond)
	t.Cleanup(faults.Reset)
	const conns = 3
	go func() {
		// Once every connection has a request on the wire, the next message
		// each receives (its second job) makes it panic.
		deadline := time.Now().Add(10 * time.Second)
		for f.rcv.PeakConcurrency() < conns && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		faults.Arm("connection", conns)
	}()
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: conns}}.deliver(t, 30, 60*time.Second)
	require.Len(t, got, 30)
	require.Equal(t, conns, faults.Injected("connection"))
	require.Len(t, f.rcv.CountByUID(), 30)
	require.Equal(t, conns, f.rcv.PeakConcurrency(), "requests at once at the receiver")
}

// A run of genuinely bad events opens the breaker too; it must not stick
// on them: the probes go round the events held, the first good one closes
// the breaker, and the bad ones end in the dead-letter file once each.
func TestABreakerOpenedByBadEventsDoesNotStick(t *testing.T) {
	f := newFixture(t)
	bad := map[string]bool{}
	for i := 3; i <= 16; i++ {
		bad[fmt.Sprintf("ev-%d", i)] = true
	}
	f.rcv.RejectWhere(400, func(r map[string]any) bool { id, _ := r["uid"].(string); return bad[id] })
	const n = 40
	got := batchRun{f: f, deps: pool.Deps{MaxConnections: 2},
		until: func() bool { return len(deadLetterIDs(t, f)) == len(bad) },
	}.deliver(t, n, 60*time.Second)
	for seq, d := range got {
		want := messages.Sent
		if bad[fmt.Sprintf("ev-%d", seq)] {
			want = messages.DeadLettered
		}
		require.Equal(t, want, d.Outcome, seq)
	}
	requireOnce(t, f, n-len(bad))
	ids := deadLetterIDs(t, f)
	require.Len(t, ids, len(bad))
	for _, id := range ids {
		require.True(t, bad[id], id)
	}
}
