package checkpoint_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/fdfwd/teleport-event-handler/actors/checkpoint"
	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/await"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// store records transactions and fails the first failN of them.
type store struct {
	mu     sync.Mutex
	failN  int
	calls  int
	txs    [][]kv.Write
	values map[string]string
	block  chan struct{} // when set, Apply waits on it (to pile saves up)
	// refuse fails every transaction that writes this key, as bbolt fails
	// one that puts a key where a bucket is.
	refuse string
}

func (s *store) Apply(ws []kv.Write) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.failN {
		return errors.New("disk full")
	}
	for _, w := range ws {
		if s.refuse != "" && w.Key == s.refuse {
			return fmt.Errorf("write: %w", bolterrors.ErrIncompatibleValue)
		}
	}
	s.txs = append(s.txs, ws)
	for _, w := range ws {
		s.values[w.Key] = string(w.Value)
	}
	return nil
}

func (s *store) snapshot() (txs int, values map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	values = map[string]string{}
	for k, v := range s.values {
		values[k] = v
	}
	return len(s.txs), values
}

// replies collects Saved messages.
type replies struct {
	mu   sync.Mutex
	last map[string]uint64
	pid  *actor.PID
}

func newReplies(system *actor.ActorSystem) *replies {
	r := &replies{last: map[string]uint64{}}
	r.pid = system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*messages.Saved); ok {
			r.mu.Lock()
			r.last[m.Key] = max(r.last[m.Key], m.Seq)
			r.mu.Unlock()
		}
	}))
	return r
}

func (r *replies) waitFor(t *testing.T, key string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := r.last[key]
		r.mu.Unlock()
		if got >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Saved for %s reached seq %d, want %d", key, got, seq)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func save(key string, seq uint64, to *actor.PID) *messages.Save {
	return &messages.Save{Key: key, Seq: seq, ReplyTo: to,
		Writes: []kv.Write{{Bucket: "b", Key: key, Value: fmt.Appendf(nil, "%d", seq)}}}
}

func TestCoalescesSavesPerKey(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	s := &store{values: map[string]string{}, block: make(chan struct{})}
	r := newReplies(system)
	w := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: s}))
	// The first transaction blocks; everything sent meanwhile is coalesced.
	system.Root.Send(w, save("audit", 1, r.pid))
	for seq := uint64(2); seq <= 100; seq++ {
		system.Root.Send(w, save("audit", seq, r.pid))
		system.Root.Send(w, save("other", seq, r.pid))
	}
	time.Sleep(50 * time.Millisecond) // let the mailbox fill behind the blocked write
	close(s.block)
	r.waitFor(t, "audit", 100)
	r.waitFor(t, "other", 100)
	txs, values := s.snapshot()
	require.Less(t, txs, 10, "saves were not coalesced")
	require.Equal(t, map[string]string{"audit": "100", "other": "100"}, values)
	require.NoError(t, system.Root.StopFuture(w).Wait())
}

func TestTransactionsAreSpacedByTheInterval(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	s := &store{values: map[string]string{}}
	r := newReplies(system)
	const interval = 20 * time.Millisecond
	w := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: s, Interval: interval}))
	// A save to an idle writer is written at once.
	began := time.Now()
	system.Root.Send(w, save("audit", 1, r.pid))
	r.waitFor(t, "audit", 1)
	require.Less(t, time.Since(began), interval, "the first save waited")
	// A steady stream of saves for 300 ms: about one transaction per
	// interval, not one per save.
	seq := uint64(1)
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); {
		seq++
		system.Root.Send(w, save("audit", seq, r.pid))
		time.Sleep(time.Millisecond)
	}
	r.waitFor(t, "audit", seq)
	txs, values := s.snapshot()
	require.LessOrEqual(t, txs, 1+int(time.Since(began)/interval)+1)
	require.Greater(t, seq, uint64(3*txs), "saves were not gathered")
	require.Equal(t, fmt.Sprint(seq), values["audit"])
	require.NoError(t, system.Root.StopFuture(w).Wait())
}

func TestRetriesAFailedWriteUntilItSucceeds(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	s := &store{values: map[string]string{}, failN: 3}
	r := newReplies(system)
	clock := clockwork.NewFakeClock()
	w := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: s, Clock: clock}))
	system.Root.Send(w, save("audit", 7, r.pid))
	for range 3 {
		waiters(t, clock, 1) // a failed write's retry
		clock.Advance(time.Minute)
	}
	r.waitFor(t, "audit", 7)
	_, values := s.snapshot()
	require.Equal(t, "7", values["audit"])
	require.NoError(t, system.Root.StopFuture(w).Wait())
}

func TestPendingSavesSurviveARestart(t *testing.T) {
	t.Cleanup(faults.Reset)
	system := actor.NewActorSystem()
	defer system.Shutdown()
	s := &store{values: map[string]string{}}
	r := newReplies(system)
	// The first write fails by panicking: protoactor's default supervisor
	// restarts the writer with the save still pending.
	faults.Arm("checkpoint", 1)
	w := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: s}))
	system.Root.Send(w, save("audit", 5, r.pid))
	r.waitFor(t, "audit", 5)
	require.Equal(t, 1, faults.Injected("checkpoint"))
	_, values := s.snapshot()
	require.Equal(t, "5", values["audit"])
	require.NoError(t, system.Root.StopFuture(w).Wait())
}

func TestStoppingWritesWhatIsPending(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	s := &store{values: map[string]string{}, failN: 1}
	clock := clockwork.NewFakeClock()
	w := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: s, Clock: clock}))
	system.Root.Send(w, save("audit", 9, nil))
	// The first write fails and a retry is scheduled; stopping does not
	// wait for it but writes at once.
	waiters(t, clock, 1)
	require.NoError(t, system.Root.StopFuture(w).Wait())
	_, values := s.snapshot()
	require.Equal(t, "9", values["audit"])
}

// waiters waits until n timers wait on the clock.
func waiters(t *testing.T, clock *clockwork.FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, clock.BlockUntilContext(ctx, n))
}

// failures collects SaveFailed messages.
type failures struct {
	ch  chan *messages.SaveFailed
	pid *actor.PID
}

func newFailures(system *actor.ActorSystem) *failures {
	f := &failures{ch: make(chan *messages.SaveFailed, 10)}
	f.pid = system.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*messages.SaveFailed); ok {
			f.ch <- m
		}
	}))
	return f
}

func (f *failures) next(t *testing.T) *messages.SaveFailed {
	t.Helper()
	return await.Recv(t, f.ch, 10*time.Second, "no SaveFailed")
}

// A save that can never be written (a key too large for bbolt: once, a
// user name typed at the login prompt) used to fail every group commit
// for ever, and with it every stream's checkpoint. It fails alone now.
func TestASaveThatCanNeverBeWrittenFailsAloneAndTheRestCommit(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	s := &store{values: map[string]string{}, block: make(chan struct{})}
	r := newReplies(system)
	f := newFailures(system)
	w := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: s}))
	system.Root.Send(w, save("first", 1, r.pid)) // blocks the writer until the rest is queued
	system.Root.Send(w, save("audit", 2, r.pid))
	bad := save("lock/x", 3, f.pid)
	bad.Writes = append(bad.Writes, kv.Write{Bucket: "b", Key: strings.Repeat("x", 40_000), Value: []byte("1")})
	system.Root.Send(w, bad)
	system.Root.Send(w, save("session", 4, r.pid))
	time.Sleep(20 * time.Millisecond) // let the mailbox fill behind the blocked write
	close(s.block)

	failed := f.next(t)
	require.Equal(t, "lock/x", failed.Key)
	require.Equal(t, uint64(3), failed.Seq)
	require.True(t, persistence.Unwritable(failed.Err), "got %v", failed.Err)
	var u supervisor.Unrecoverable
	require.True(t, errors.As(failed.Err, &u) && u.Unrecoverable(), "a requester that panics with it is not restarted into it")
	r.waitFor(t, "audit", 2)
	r.waitFor(t, "session", 4)
	_, values := s.snapshot()
	require.Equal(t, map[string]string{"first": "1", "audit": "2", "session": "4"}, values, "nothing of the failed save is written")

	// The writer goes on: later saves of that key are written.
	system.Root.Send(w, save("lock/x", 5, r.pid))
	r.waitFor(t, "lock/x", 5)
	require.NoError(t, system.Root.StopFuture(w).Wait())
}

// A store error that retrying cannot fix, which the checks before the
// transaction did not see (a key where a bucket is), is found by writing
// the saves one at a time.
func TestAnUnwritableGroupIsSplitToFindTheSaveThatFails(t *testing.T) {
	system := actor.NewActorSystem()
	defer system.Shutdown()
	s := &store{values: map[string]string{}, block: make(chan struct{}), refuse: "poison"}
	r := newReplies(system)
	f := newFailures(system)
	w := system.Root.Spawn(checkpoint.Props(checkpoint.Deps{Store: s}))
	system.Root.Send(w, save("first", 1, r.pid))
	system.Root.Send(w, save("audit", 2, r.pid))
	system.Root.Send(w, save("poison", 3, f.pid))
	system.Root.Send(w, save("session", 4, r.pid))
	time.Sleep(20 * time.Millisecond)
	close(s.block)
	require.Equal(t, "poison", f.next(t).Key)
	r.waitFor(t, "audit", 2)
	r.waitFor(t, "session", 4)
	_, values := s.snapshot()
	require.Equal(t, map[string]string{"first": "1", "audit": "2", "session": "4"}, values)
	require.NoError(t, system.Root.StopFuture(w).Wait())
}
