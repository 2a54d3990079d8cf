package sessions_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/trace"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/actors/checkpoint"
	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/inflight/inflighttest"
	"github.com/fdfwd/teleport-event-handler/actors/root"
	"github.com/fdfwd/teleport-event-handler/actors/sessions"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

const base = "https://fluentd.test/session"

// fakeTeleport serves recordings by session ID.
type fakeTeleport struct {
	mu         sync.Mutex
	recs       map[string][]*auditlogpb.EventUnstructured
	notFound   map[string]int // calls answered NotFound first (-1: always)
	breakAfter map[string]int // the first stream of the session fails after this many events
	open, peak int
	calls      map[string]int
}

func newFakeTeleport() *fakeTeleport {
	return &fakeTeleport{recs: map[string][]*auditlogpb.EventUnstructured{}, notFound: map[string]int{},
		breakAfter: map[string]int{}, calls: map[string]int{}}
}

// record adds a recording of n events; every third one is a print event.
func (f *fakeTeleport) record(sid string, n int) {
	for i := range n {
		typ := "session.data"
		if i%3 == 1 {
			typ = "print"
		}
		st, _ := structpb.NewStruct(map[string]any{"event": typ, "sid": sid, "ei": float64(i), "uid": fmt.Sprintf("%s-%d", sid, i)})
		f.recs[sid] = append(f.recs[sid], &auditlogpb.EventUnstructured{Type: typ, Index: int64(i),
			Id: fmt.Sprintf("%s-%d", sid, i), Unstructured: st})
	}
}

// sidOf is the session ID (a UUID, as Teleport's are) of the recording a
// test calls name; the fake Teleport keys its recordings by name.
func sidOf(name string) string { return uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)).String() }

// nameOf is the name whose session ID is sid.
func (f *fakeTeleport) nameOf(sid string) string {
	for name := range f.recs {
		if sidOf(name) == sid {
			return name
		}
	}
	for name := range f.notFound {
		if sidOf(name) == sid {
			return name
		}
	}
	return sid
}

func (f *fakeTeleport) StreamUnstructuredSessionEvents(ctx context.Context, id string, start int64) (chan *auditlogpb.EventUnstructured, chan error) {
	events, errs := make(chan *auditlogpb.EventUnstructured), make(chan error, 1)
	f.mu.Lock()
	sid := f.nameOf(id)
	f.calls[sid]++
	if n := f.notFound[sid]; n != 0 {
		if n > 0 {
			f.notFound[sid]--
		}
		f.mu.Unlock()
		errs <- trace.NotFound("recording %s not found", sid)
		return events, errs
	}
	rec := f.recs[sid]
	breakAfter, breaks := f.breakAfter[sid]
	delete(f.breakAfter, sid)
	f.open++
	f.peak = max(f.peak, f.open)
	f.mu.Unlock()
	go func() {
		defer func() {
			f.mu.Lock()
			f.open--
			f.mu.Unlock()
		}()
		sent := 0
		for _, ev := range rec {
			if ev.Index < start {
				continue
			}
			if breaks && sent == breakAfter {
				errs <- trace.BadParameter("stream broken")
				return
			}
			select {
			case events <- ev:
				sent++
				time.Sleep(time.Millisecond) // let streams overlap
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			}
		}
		close(events)
	}()
	return events, errs
}

type fixture struct {
	// undone is what the last run reported left undone; drainTimedOut is
	// set when a stop had to give up waiting for the manager's drain.
	undone        error
	drainTimedOut bool
	tp            *fakeTeleport
	pool          *inflighttest.Pool
	store         *persistence.Store
	deps          sessions.Deps
}

// count is how many different events of the session the pool answered,
// and how many answers repeated one.
func (f *fixture) count(sid string) (events, dups int) {
	return f.pool.AtURL(sessions.URLFor(base, sidOf(sid)))
}

func newFixture(t *testing.T) *fixture {
	store := storetest.Open(t)
	return &fixture{tp: newFakeTeleport(), pool: inflighttest.NewPool(), store: store, deps: sessions.Deps{
		URL: base, Filter: inflight.Filter{Skip: map[string]bool{"print": true}}, Concurrency: 2, Window: 4,
		ExitOnLastEvent: true, Log: zerolog.Nop(), UploadWait: time.Minute,
	}}
}

func upload(sid string, at time.Time) *auditlogpb.EventUnstructured {
	return uploadID(sidOf(sid), at)
}

// uploadID is the upload event of the session whose ID is sid, as it is.
func uploadID(sid string, at time.Time) *auditlogpb.EventUnstructured {
	st, _ := structpb.NewStruct(map[string]any{"event": sessions.UploadEvent, "sid": sid})
	return &auditlogpb.EventUnstructured{Type: sessions.UploadEvent, Id: "upload-" + sid, Time: timestamppb.New(at), Unstructured: st}
}

// run starts checkpoint, pool and manager under a root, registers the
// uploads as the poller would, tells the manager the audit stream caught up
// and waits for the root to finish or timeout to pass (then stops it).
func (f *fixture) run(t *testing.T, uploads []*auditlogpb.EventUnstructured, timeout time.Duration) (finished bool) {
	t.Helper()
	system := actor.NewActorSystem()
	defer system.Shutdown()
	strategy := supervisor.New(supervisor.Policy{InitialDelay: time.Millisecond}, zerolog.Nop())
	d := f.deps
	d.Sessions, d.Store, d.Kit = f.tp, f.store, supervisor.Kit{Strategy: strategy}
	// Time passes only when the manager or a player waits for it (a retry
	// after a failed stream, a recording not due yet): each wait ends at
	// once, and the tests do not wait out the backoff.
	clock := clockwork.NewFakeClockAt(time.Now())
	d.Clock = clock
	defer driveClock(clock)()
	d.Checkpoint, d.Pool = root.PID(system, checkpoint.Name), root.PID(system, "pool")
	// The manager announces its start as a tap does.
	started := make(chan struct{})
	var once sync.Once
	system.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*messages.TapStarted); ok {
			once.Do(func() { close(started) })
		}
	})
	tree, err := root.Start(system, root.Spec{Strategy: strategy, Log: zerolog.Nop(), DrainTimeout: 2 * time.Second,
		OnDrainTimeout: func() { f.drainTimedOut = true },
		Children: []root.Child{
			{Name: checkpoint.Name, Props: checkpoint.Props(checkpoint.Deps{Store: f.store})},
			{Name: "pool", Props: actor.PropsFromProducer(func() actor.Actor { return f.pool })},
			{Name: sessions.Name, Drain: true, Finishes: true, Props: sessions.Props(d)},
		}})
	require.NoError(t, err)
	mgr := root.PID(system, sessions.Name)
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("the manager did not start")
	}

	// The poller's part: every upload observed, then CaughtUp.
	observed := make(chan struct{}, len(uploads))
	driver := system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*messages.Observed); ok {
			observed <- struct{}{}
		}
	}))
	for i, ev := range uploads {
		system.Root.Send(mgr, &messages.Observe{Epoch: 1, Seq: uint64(i + 1), Event: ev, ReplyTo: driver})
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline := ctx.Done()
	for range uploads {
		select {
		case <-observed:
		case <-deadline:
			t.Fatal("uploads were not all registered")
		}
	}
	system.Root.Send(mgr, &messages.CaughtUp{Name: "poller"})

	finished, err = tree.Wait(deadline, 10*time.Second)
	if !errors.Is(err, root.ErrLeftUndone) {
		require.NoError(t, err)
	}
	f.undone = err
	return finished
}

func (f *fixture) stored(t *testing.T) []persistence.Recording {
	page, err := f.store.Recordings("", 1000)
	require.NoError(t, err)
	return page.Recordings
}

func TestStreamsEveryRecordingOnceWithBoundedConcurrency(t *testing.T) {
	f := newFixture(t)
	var uploads []*auditlogpb.EventUnstructured
	for i := range 6 {
		sid := fmt.Sprintf("s%d", i)
		f.tp.record(sid, 30+i*7)
		uploads = append(uploads, upload(sid, time.Now()))
	}
	// The same upload seen twice (a replay) registers once.
	uploads = append(uploads, upload("s0", time.Now()))
	require.True(t, f.run(t, uploads, 20*time.Second), "did not finish")
	for i := range 6 {
		sid := fmt.Sprintf("s%d", i)
		n := 30 + i*7
		events, dups := f.count(sid)
		require.Equal(t, n-(n+1)/3, events, "%s: every event but the skipped prints", sid)
		require.Zero(t, dups, sid)
	}
	require.LessOrEqual(t, f.tp.peak, 2, "more streams at once than --concurrency")
	require.Empty(t, f.stored(t), "finished recordings stay in the store")
}

func TestEmptySkipListForwardsEverything(t *testing.T) {
	f := newFixture(t)
	f.deps.Filter = inflight.Filter{}
	f.tp.record("all", 20)
	require.True(t, f.run(t, []*auditlogpb.EventUnstructured{upload("all", time.Now())}, 20*time.Second))
	events, _ := f.count("all")
	require.Equal(t, 20, events)
}

func TestLateRecordingIsWaitedForAndMissingOneGivenUp(t *testing.T) {
	f := newFixture(t)
	f.deps.Concurrency = 1
	f.tp.record("late", 10)
	f.tp.notFound["late"] = 2
	f.tp.notFound["gone"] = -1 // its upload event is old: given up after MinAttempts
	f.tp.record("fine", 10)
	uploads := []*auditlogpb.EventUnstructured{upload("gone", time.Now().Add(-time.Hour)), upload("late", time.Now()), upload("fine", time.Now())}
	require.True(t, f.run(t, uploads, 30*time.Second), "did not finish")
	late, _ := f.count("late")
	fine, _ := f.count("fine")
	require.Equal(t, 7, late, "10 events, 3 of them prints")
	require.Equal(t, 7, fine)
	require.Equal(t, sessions.DefaultMinAttempts, f.tp.calls["gone"])
	require.Empty(t, f.stored(t), "a given-up recording stays in the store")
	require.ErrorContains(t, f.undone, "1 session recording(s) given up: "+sidOf("gone"))
}

func TestBrokenStreamResumesWithoutDuplicates(t *testing.T) {
	f := newFixture(t)
	f.tp.record("broken", 40)
	f.tp.breakAfter["broken"] = 17
	require.True(t, f.run(t, []*auditlogpb.EventUnstructured{upload("broken", time.Now())}, 20*time.Second))
	events, dups := f.count("broken")
	require.Equal(t, 40-(40+1)/3, events)
	require.Zero(t, dups)
	require.Equal(t, 2, f.tp.calls["broken"])
}

func TestPanickingPlayerIsRestartedAndContinuesFromItsCheckpoint(t *testing.T) {
	t.Cleanup(faults.Reset)
	f := newFixture(t)
	f.deps.Concurrency = 1
	f.tp.record("p", 200)
	faults.Arm("player", 3)
	require.True(t, f.run(t, []*auditlogpb.EventUnstructured{upload("p", time.Now())}, 20*time.Second))
	require.Equal(t, 3, faults.Injected("player"))
	events, dups := f.count("p")
	require.Equal(t, 200-(200+1)/3, events)
	require.LessOrEqual(t, dups, 3*f.deps.Window, "resends beyond the in-flight window")
	require.Greater(t, f.tp.calls["p"], 1, "the restarted player streams again from its index")
}

func TestUnfinishedRecordingsResumeOnStart(t *testing.T) {
	f := newFixture(t)
	f.deps.ExitOnLastEvent = false
	f.tp.record("long", 400)
	f.tp.record("queued", 30)
	f.deps.Concurrency = 1
	// Stop the first run early: "long" is mid-stream, "queued" waits.
	require.False(t, f.run(t, []*auditlogpb.EventUnstructured{upload("long", time.Now()), upload("queued", time.Now())}, 150*time.Millisecond))
	first, _ := f.count("long")
	require.Less(t, first, 400-(400+1)/3, "the first run finished already; nothing to resume")
	require.False(t, f.drainTimedOut, "the manager did not answer the drain once its player stopped")
	stored := f.stored(t)
	require.Len(t, stored, 2)
	require.Positive(t, stored[0].Index, "the index of the recording in progress is checkpointed")

	f.deps.ExitOnLastEvent = true
	require.True(t, f.run(t, nil, 20*time.Second), "did not finish")
	long, dups := f.count("long")
	queued, _ := f.count("queued")
	require.Equal(t, 400-(400+1)/3, long)
	require.Equal(t, 30-(30+1)/3, queued)
	require.Zero(t, dups, "a drained player checkpoints everything it sent")
	require.Empty(t, f.stored(t))
}

// driveClock advances clock by a second whenever something waits on it,
// until the returned function is called.
func driveClock(clock *clockwork.FakeClock) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for clock.BlockUntilContext(ctx, 1) == nil {
			clock.Advance(time.Second)
		}
	}()
	return func() { cancel(); <-done }
}

// A session ID goes into the URL its events are posted to: one that is not
// a UUID, as Teleport's are, could change the path or the host, so it is
// logged and counted, never streamed or sent.
func TestOddSessionIDsAreNotStreamed(t *testing.T) {
	f := newFixture(t)
	m := metrics.New()
	f.deps.Metrics = m
	f.tp.record("fine", 10)
	odd := []string{"../../etc", "x.log/../other", "a@evil.example.com", "s1", "{" + sidOf("x") + "}", "urn:uuid:" + sidOf("y")}
	uploads := []*auditlogpb.EventUnstructured{upload("fine", time.Now())}
	for _, sid := range odd {
		uploads = append(uploads, uploadID(sid, time.Now()))
	}
	require.True(t, f.run(t, uploads, 20*time.Second), "did not finish")
	fine, _ := f.count("fine")
	require.Equal(t, 7, fine)
	require.Equal(t, 7, f.pool.Sent(), "an odd session ID was sent")
	f.tp.mu.Lock()
	require.Len(t, f.tp.calls, 1, "an odd session ID was streamed")
	f.tp.mu.Unlock()
	require.Empty(t, f.stored(t))
	require.Equal(t, float64(len(odd)), testutil.ToFloat64(m.SessionsGivenUp.WithLabelValues("invalid_id")))
}

func TestSessionURLEscapesTheID(t *testing.T) {
	require.Equal(t, "https://f:8888/session.a%2Fb.log", sessions.URLFor("https://f:8888/session", "a/b"))
	id := sidOf("x")
	require.Equal(t, "https://f:8888/session."+id+".log", sessions.URLFor("https://f:8888/session", id))
}

// A syslog URL needs no path: the session's suffix goes after one, and
// SessionOf reads the recording back from any recording's URL.
func TestSessionURLOfASyslogReceiverAndBack(t *testing.T) {
	id := sidOf("x")
	require.Equal(t, "relp+tls://siem:2514/."+id+".log", sessions.URLFor("relp+tls://siem:2514", id))
	for _, base := range []string{"relp+tls://siem:2514", "syslog+tls://siem/rec", "https://f:8888/session"} {
		for _, sid := range []string{id, "a/b"} {
			require.Equal(t, sid, sessions.SessionOf(sessions.URLFor(base, sid)), base)
		}
	}
	require.Empty(t, sessions.SessionOf("relp+tls://siem:2514/audit"))
	require.Empty(t, sessions.SessionOf("https://f.example.com:8888/test"))
}

// A recording its player fails on every time (a player that panics on one
// of its events) is given up after MaxCrashes player deaths; it does not
// hold up --exit-on-last-event, which reports it.
func TestRecordingThatKillsItsPlayerIsGivenUp(t *testing.T) {
	t.Cleanup(faults.Reset)
	f := newFixture(t)
	m := metrics.New()
	f.deps.Metrics, f.deps.Concurrency = m, 1
	f.tp.record("deadly", 20)
	f.tp.record("fine", 10)
	// Every message to the player of "deadly" panics: it dies, its restart
	// budget spent, each time the recording is tried.
	faults.Arm(sessions.PlayerFault(sidOf("deadly")), 1<<20)
	uploads := []*auditlogpb.EventUnstructured{upload("deadly", time.Now()), upload("fine", time.Now())}
	require.True(t, f.run(t, uploads, 30*time.Second), "held up by the recording its player dies on")
	fine, _ := f.count("fine")
	require.Equal(t, 7, fine)
	require.Empty(t, f.stored(t))
	require.Equal(t, 1.0, testutil.ToFloat64(m.SessionsGivenUp.WithLabelValues("failing")))
	require.ErrorIs(t, f.undone, root.ErrLeftUndone)
	require.ErrorContains(t, f.undone, "1 session recording(s) given up: "+sidOf("deadly"))
	perDeath := supervisor.Default.Budget + 1
	require.Equal(t, sessions.MaxCrashes*perDeath, faults.Injected(sessions.PlayerFault(sidOf("deadly"))))
}

// The player deaths on a recording are counted in the state file: a start
// goes on counting where the last one stopped.
func TestPlayerDeathsAreCountedAcrossStarts(t *testing.T) {
	t.Cleanup(faults.Reset)
	f := newFixture(t)
	f.tp.record("deadly", 20)
	sid := sidOf("deadly")
	require.NoError(t, f.store.Apply(persistence.RecordingWrites(persistence.Recording{
		ID: sid, Seq: 1, Registered: time.Now(), UploadTime: time.Now(), Crashes: sessions.MaxCrashes - 1,
	})))
	faults.Arm(sessions.PlayerFault(sid), 1<<20)
	require.True(t, f.run(t, nil, 30*time.Second))
	require.Empty(t, f.stored(t))
	require.Equal(t, supervisor.Default.Budget+1, faults.Injected(sessions.PlayerFault(sid)), "one death, then given up")
	require.ErrorContains(t, f.undone, sid)
}
