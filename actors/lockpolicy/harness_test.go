package lockpolicy_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/checkpoint"
	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/actors/root"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
	"github.com/fdfwd/teleport-event-handler/tests/syncbuf"
)

// fakeLocker records the locks it accepts. Calls fail with errs in order,
// then with always (nil: success).
type fakeLocker struct {
	mu     sync.Mutex
	errs   []error
	always error
	calls  int
	locks  []*types.LockV2
}

func (f *fakeLocker) UpsertLock(ctx context.Context, lock types.Lock) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if err := ctx.Err(); err != nil {
		return err
	}
	err := f.always
	if len(f.errs) > 0 {
		err, f.errs = f.errs[0], f.errs[1:]
	}
	if err == nil {
		f.locks = append(f.locks, lock.(*types.LockV2))
	}
	return err
}

func (f *fakeLocker) set(always error) {
	f.mu.Lock()
	f.always = always
	f.mu.Unlock()
}

func (f *fakeLocker) state() (calls int, locks []*types.LockV2) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, append([]*types.LockV2(nil), f.locks...)
}

// logBuffer collects log lines from several goroutines.
type logBuffer struct{ syncbuf.Buffer }

// count returns how many lines contain every one of parts.
func (b *logBuffer) count(parts ...string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// clock is the wall clock moved by an offset; its timers run in real time.
type clock struct {
	clockwork.Clock
	offset atomic.Int64
}

func (c *clock) Now() time.Time                  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *clock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }
func (c *clock) advance(d time.Duration)         { c.offset.Add(int64(d)) }
func (c *clock) ago(d time.Duration) time.Time   { return c.Now().Add(-d) }

type fixture struct {
	t      *testing.T
	store  *persistence.Store
	locker *fakeLocker
	logs   *logBuffer
	clock  *clock
	m      *metrics.Metrics
	deps   lockpolicy.Deps
	// unwritable makes the checkpoint writer answer SaveFailed to the saves
	// of these users, as it does for a save that can never be written.
	unwritable map[string]bool
}

func newFixture(t *testing.T) *fixture {
	store := storetest.Open(t)
	f := &fixture{t: t, store: store, locker: &fakeLocker{}, logs: &logBuffer{}, clock: &clock{Clock: clockwork.NewRealClock()}, m: metrics.New()}
	f.deps = lockpolicy.Deps{
		Locker:   f.locker,
		Store:    store,
		Config:   lockpolicy.Config{FailedAttempts: 3, Period: time.Minute, For: 30 * time.Minute},
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, DeniedRetry: 30 * time.Millisecond,
		CallTimeout: 5 * time.Second,
		Clock:       f.clock,
		Log:         zerolog.New(f.logs).Level(zerolog.DebugLevel),
		Metrics:     f.m,
	}
	return f
}

// unwritable is the store, but for the lock states of the users it names:
// their writes fail as one that can never be written does.
type unwritable struct {
	*persistence.Store
	users map[string]bool
}

func (u unwritable) Apply(ws []kv.Write) error {
	for user := range u.users {
		for _, w := range ws {
			if w.Key == persistence.LockKey(user) {
				return &persistence.UnwritableError{Bucket: w.Bucket, Key: w.Key, Err: errors.New("injected")}
			}
		}
	}
	return u.Store.Apply(ws)
}

// run is one life of the daemon: an actor system with the lock policy under
// a root. The test plays the poller: it sends Observes, and sends again
// those not answered whenever the policy (re)starts.
type run struct {
	t      *testing.T
	system *actor.ActorSystem
	tree   *root.Tree
	driver *actor.PID

	mu         sync.Mutex
	tap        *actor.PID
	started    chan struct{} // closed on the first TapStarted
	seq        uint64
	unanswered map[uint64]*messages.Observe
	answered   chan uint64
}

func (f *fixture) start() *run {
	t := f.t
	r := &run{t: t, system: actor.NewActorSystem(), started: make(chan struct{}),
		unanswered: map[uint64]*messages.Observe{}, answered: make(chan uint64, 1024)}
	r.driver = r.system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if o, ok := ctx.Message().(*messages.Observed); ok {
			r.mu.Lock()
			_, was := r.unanswered[o.Seq]
			delete(r.unanswered, o.Seq)
			r.mu.Unlock()
			if was {
				r.answered <- o.Seq
			}
		}
	}))
	r.system.EventStream.Subscribe(func(evt any) {
		ts, ok := evt.(*messages.TapStarted)
		if !ok {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.tap == nil {
			close(r.started)
		}
		r.tap = ts.PID
		for _, o := range r.unanswered {
			r.system.Root.Send(ts.PID, o)
		}
	})
	strategy := supervisor.New(supervisor.Policy{InitialDelay: time.Millisecond}, zerolog.Nop())
	deps := f.deps
	deps.Kit = supervisor.Kit{Strategy: strategy}
	deps.Checkpoint = root.PID(r.system, checkpoint.Name)
	var err error
	r.tree, err = root.Start(r.system, root.Spec{Strategy: strategy, Log: zerolog.Nop(), DrainTimeout: 2 * time.Second,
		Children: []root.Child{
			{Name: checkpoint.Name, Props: checkpoint.Props(checkpoint.Deps{Store: unwritable{f.store, f.unwritable}, Metrics: f.m, Kit: deps.Kit})},
			{Name: lockpolicy.Name, Props: lockpolicy.Props(deps)},
		}})
	require.NoError(t, err)
	select {
	case <-r.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the lock policy did not start")
	}
	t.Cleanup(r.stop)
	return r
}

// observe hands events to the policy as the poller does and waits until
// each is answered.
func (r *run) observe(evs ...*auditlogpb.EventUnstructured) {
	r.t.Helper()
	want := map[uint64]bool{}
	r.mu.Lock()
	for _, ev := range evs {
		r.seq++
		o := &messages.Observe{Epoch: 1, Seq: r.seq, Event: ev, ReplyTo: r.driver}
		r.unanswered[o.Seq] = o
		want[o.Seq] = true
		r.system.Root.Send(r.tap, o)
	}
	r.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for len(want) > 0 {
		select {
		case seq := <-r.answered:
			delete(want, seq)
		case <-deadline:
			r.t.Fatalf("%d events were not answered", len(want))
		}
	}
}

// stop shuts the tree down in order and waits for it.
func (r *run) stop() {
	if r.system == nil {
		return
	}
	stop := make(chan struct{})
	close(stop)
	_, err := r.tree.Wait(stop, 10*time.Second)
	require.NoError(r.t, err)
	r.system.Shutdown()
	r.system = nil
}

// login is a user.login event as Teleport writes it.
func login(user, id string, at time.Time, success bool) *auditlogpb.EventUnstructured {
	code := "T1000W"
	if success {
		code = "T1000I"
	}
	ev, err := apievents.ToUnstructured(&apievents.UserLogin{
		Metadata:     apievents.Metadata{ID: id, Type: lockpolicy.LoginEvent, Code: code, Time: at.UTC(), ClusterName: "test-cluster"},
		UserMetadata: apievents.UserMetadata{User: user, Login: "root"},
		Status:       apievents.Status{Success: success, Error: "invalid credentials"},
		Method:       "local",
	})
	if err != nil {
		panic(err)
	}
	return ev
}

func failure(user, id string, at time.Time) *auditlogpb.EventUnstructured {
	return login(user, id, at, false)
}

// eventually waits for cond, failing the test after d.
func eventually(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	require.Eventually(t, cond, d, 5*time.Millisecond, what)
}

func (f *fixture) lockState(user string) persistence.LockState {
	s, _, err := f.store.LockState(user)
	require.NoError(f.t, err)
	return s
}
