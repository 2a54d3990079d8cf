package lockpolicy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	"github.com/gravitational/trace"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

func TestWants(t *testing.T) {
	now := time.Now()
	require.True(t, lockpolicy.Wants(failure("alice", "1", now)))
	require.False(t, lockpolicy.Wants(login("alice", "2", now, true)), "a successful login")
	noStatus := failure("alice", "3", now)
	delete(noStatus.Unstructured.Fields, "success")
	require.False(t, lockpolicy.Wants(noStatus), "no success field: not a failure")
	st, _ := structpb.NewStruct(map[string]any{"user": "alice", "success": false})
	require.False(t, lockpolicy.Wants(&auditlogpb.EventUnstructured{Type: "session.start", Unstructured: st}))
}

func requireOneLock(t *testing.T, f *fixture, user string, trigger time.Time) *types.LockV2 {
	t.Helper()
	eventually(t, 5*time.Second, func() bool { _, locks := f.locker.state(); return len(locks) > 0 }, "no lock written")
	eventually(t, 5*time.Second, func() bool { l := f.lockState(user).Lock; return l != nil && !l.Pending() }, "the lock is not recorded as written")
	_, locks := f.locker.state()
	require.Len(t, locks, 1)
	l := locks[0]
	require.Equal(t, lockpolicy.LockName(user), l.GetName())
	require.Equal(t, types.LockTarget{User: user}, l.Target())
	require.NotNil(t, l.LockExpiry())
	require.True(t, l.LockExpiry().Equal(trigger.Add(f.deps.For)), "expires %s, want %s", l.LockExpiry(), trigger.Add(f.deps.For))
	return l
}

func TestLocksTheUserOnceWithTargetExpiryAndMessage(t *testing.T) {
	f := newFixture(t)
	r := f.start()
	base := f.clock.ago(10 * time.Second)
	r.observe(
		failure("alice", "a1", base),
		failure("bob", "b1", base.Add(time.Second)),
		failure("alice", "a2", base.Add(2*time.Second)),
		failure("bob", "b2", base.Add(3*time.Second)),
		failure("alice", "a3", base.Add(4*time.Second)),
	)
	l := requireOneLock(t, f, "alice", base.Add(4*time.Second))
	require.Contains(t, l.Message(), "3 within 1m0s")
	require.Equal(t, 1.0, testutil.ToFloat64(f.m.LocksCreated))
	require.Len(t, f.lockState("bob").Failures, 2, "bob's count is kept")

	// More failures of a locked user (and replays) lock no one again.
	r.observe(
		failure("alice", "a3", base.Add(4*time.Second)),
		failure("alice", "a4", base.Add(5*time.Second)),
		failure("alice", "a5", base.Add(6*time.Second)),
		failure("alice", "a6", base.Add(7*time.Second)),
	)
	// A lock is decided, stored, logged and its upsert scheduled before the
	// failure that completes it is answered: none was.
	require.Equal(t, 1, f.logs.count("locking user"))
	calls, locks := f.locker.state()
	require.Equal(t, 1, calls)
	require.Len(t, locks, 1)
}

func TestExpiredLockIsWrittenAgain(t *testing.T) {
	f := newFixture(t)
	f.deps.For = time.Minute
	r := f.start()
	base := f.clock.ago(5 * time.Second)
	r.observe(failure("alice", "a1", base), failure("alice", "a2", base.Add(time.Second)), failure("alice", "a3", base.Add(2*time.Second)))
	requireOneLock(t, f, "alice", base.Add(2*time.Second))

	f.clock.advance(2 * time.Minute)
	base = f.clock.ago(5 * time.Second)
	r.observe(failure("alice", "a4", base), failure("alice", "a5", base.Add(time.Second)), failure("alice", "a6", base.Add(2*time.Second)))
	eventually(t, 5*time.Second, func() bool { _, locks := f.locker.state(); return len(locks) == 2 }, "the expired lock was not written again")
	_, locks := f.locker.state()
	require.Equal(t, lockpolicy.LockName("alice"), locks[1].GetName())
	require.True(t, locks[1].LockExpiry().Equal(base.Add(2*time.Second+time.Minute)))
}

func TestOldFailuresLockNoOne(t *testing.T) {
	f := newFixture(t)
	r := f.start()
	var evs []*auditlogpb.EventUnstructured
	for i := range 10 {
		evs = append(evs, failure("alice", fmt.Sprint("old", i), f.clock.ago(3*time.Hour).Add(time.Duration(i)*time.Second)))
	}
	// Recent enough to be remembered, but the window ended over a period ago.
	for i := range 3 {
		evs = append(evs, failure("bob", fmt.Sprint("stale", i), f.clock.ago(100*time.Second).Add(time.Duration(i)*time.Second)))
	}
	r.observe(evs...)
	require.Zero(t, f.logs.count("locking user"), "decided before the answers")
	calls, _ := f.locker.state()
	require.Zero(t, calls)
	_, ok, err := f.store.LockState("alice")
	require.NoError(t, err)
	require.False(t, ok, "failures hours old are not even remembered")
	require.Nil(t, f.lockState("bob").Lock)
}

func TestFailedUpsertIsRetriedWithoutHoldingThePoller(t *testing.T) {
	f := newFixture(t)
	f.locker.set(trace.ConnectionProblem(errors.New("connection refused"), "teleport is down"))
	r := f.start()
	base := f.clock.ago(5 * time.Second)
	// Every event is answered although Teleport refuses the lock: the lock
	// is durable as pending.
	r.observe(failure("alice", "a1", base), failure("alice", "a2", base.Add(time.Second)), failure("alice", "a3", base.Add(2*time.Second)))
	l := f.lockState("alice").Lock
	require.NotNil(t, l)
	require.True(t, l.Pending())
	eventually(t, 5*time.Second, func() bool { calls, _ := f.locker.state(); return calls >= 4 }, "not retried")
	require.GreaterOrEqual(t, testutil.ToFloat64(f.m.TeleportErrors.WithLabelValues("UpsertLock", "connection_problem")), 3.0)

	f.locker.set(nil)
	requireOneLock(t, f, "alice", base.Add(2*time.Second))
	require.GreaterOrEqual(t, f.logs.count("writing the lock failed; retrying"), 3)
}

func TestAccessDeniedIsReportedOnceAndRetriedSlowly(t *testing.T) {
	f := newFixture(t)
	f.locker.set(trace.AccessDenied("access denied to perform action %q on %q", "create", "lock"))
	r := f.start()
	base := f.clock.ago(5 * time.Second)
	for _, u := range []string{"alice", "bob"} {
		r.observe(failure(u, u+"1", base), failure(u, u+"2", base.Add(time.Second)), failure(u, u+"3", base.Add(2*time.Second)))
	}
	eventually(t, 5*time.Second, func() bool { calls, _ := f.locker.state(); return calls >= 6 }, "not retried after access denied")
	require.Equal(t, 1, f.logs.count(`"level":"error"`), "one error, however many denials")
	require.Equal(t, 1, f.logs.count(`"level":"error"`, "lock resource with verbs create and update", "{resources: [lock], verbs: [create, update]}"))

	f.locker.set(nil)
	eventually(t, 5*time.Second, func() bool { _, locks := f.locker.state(); return len(locks) == 2 }, "locks not written once permitted")
	for _, u := range []string{"alice", "bob"} {
		eventually(t, 5*time.Second, func() bool { return !f.lockState(u).Lock.Pending() }, "the lock is not recorded as written")
	}
	require.Equal(t, 1, f.logs.count("the lock permission is granted now"))
	require.Equal(t, 2.0, testutil.ToFloat64(f.m.LocksCreated))
}

func TestDryRunLogsAndNeverLocks(t *testing.T) {
	f := newFixture(t)
	f.deps.DryRun = true
	f.locker.set(errors.New("UpsertLock must not be called in a dry run"))
	r := f.start()
	base := f.clock.ago(5 * time.Second)
	var evs []*auditlogpb.EventUnstructured
	for i := range 6 {
		evs = append(evs, failure("alice", fmt.Sprint("a", i), base.Add(time.Duration(i)*time.Second)))
	}
	r.observe(evs...)
	// Logged and stored before the answer, as written already: nothing is
	// scheduled for Teleport.
	require.Equal(t, 1, f.logs.count("dry run: would lock user"))
	require.Zero(t, f.logs.count("locking user"))
	require.NotNil(t, f.lockState("alice").Lock)
	require.False(t, f.lockState("alice").Lock.Pending(), "a dry run's lock waits for no upsert")
	calls, _ := f.locker.state()
	require.Zero(t, calls)
	require.Zero(t, f.logs.count("dry run: would lock user", `"user":"alice"`), "the user name at debug level only")
	require.Equal(t, 1, f.logs.count(`"level":"debug"`, `"user":"alice"`, `"lock":"event-handler-auto-lock-alice"`, "the user of the lock below"))
	require.Zero(t, testutil.ToFloat64(f.m.LocksCreated))
}

func TestRestartBetweenFailuresKeepsTheCount(t *testing.T) {
	f := newFixture(t)
	base := f.clock.ago(10 * time.Second)
	first, second := failure("alice", "a1", base), failure("alice", "a2", base.Add(time.Second))
	r := f.start()
	r.observe(first, second)
	r.stop()
	require.Len(t, f.lockState("alice").Failures, 2)

	// The next life sees the two again (the poller's checkpoint may not
	// have passed them) and then the third.
	r = f.start()
	r.observe(first, second, failure("alice", "a3", base.Add(2*time.Second)))
	l := requireOneLock(t, f, "alice", base.Add(2*time.Second))
	require.Contains(t, l.Message(), "3 within")
	r.stop()

	// And the lock is remembered: a third life replaying everything does
	// not lock again.
	r = f.start()
	r.observe(first, second, failure("alice", "a3", base.Add(2*time.Second)))
	require.Equal(t, 1, f.logs.count("locking user"), "the second life's lock only: decided before the answers")
	calls, _ := f.locker.state()
	require.Equal(t, 1, calls)
}

func TestCrashOnTheTriggeringFailureIsReplayed(t *testing.T) {
	t.Cleanup(faults.Reset)
	f := newFixture(t)
	r := f.start()
	base := f.clock.ago(10 * time.Second)
	r.observe(failure("alice", "a1", base), failure("alice", "a2", base.Add(time.Second)))
	// The policy panics on the third failure, is restarted and gets it
	// again, as the poller resends unanswered events to a restarted tap.
	faults.Arm(lockpolicy.Name, 1)
	r.observe(failure("alice", "a3", base.Add(2*time.Second)))
	require.Equal(t, 1, faults.Injected(lockpolicy.Name))
	requireOneLock(t, f, "alice", base.Add(2*time.Second))
}

func TestPendingLockIsWrittenAfterRestart(t *testing.T) {
	f := newFixture(t)
	f.locker.set(trace.ConnectionProblem(nil, "teleport is down"))
	base := f.clock.ago(10 * time.Second)
	r := f.start()
	r.observe(failure("alice", "a1", base), failure("alice", "a2", base.Add(time.Second)), failure("alice", "a3", base.Add(2*time.Second)))
	eventually(t, 5*time.Second, func() bool { calls, _ := f.locker.state(); return calls >= 1 }, "no attempt")
	r.stop()
	require.True(t, f.lockState("alice").Lock.Pending())

	f.locker.set(nil)
	f.start()
	requireOneLock(t, f, "alice", base.Add(2*time.Second))
	require.Equal(t, 1, f.logs.count("resuming locks not yet written to teleport"))
}

func TestPendingLockThatExpiredIsGivenUp(t *testing.T) {
	f := newFixture(t)
	f.deps.For = time.Minute
	f.locker.set(trace.ConnectionProblem(nil, "teleport is down"))
	base := f.clock.ago(10 * time.Second)
	r := f.start()
	r.observe(failure("alice", "a1", base), failure("alice", "a2", base.Add(time.Second)), failure("alice", "a3", base.Add(2*time.Second)))
	f.clock.advance(2 * time.Minute)
	eventually(t, 5*time.Second, func() bool { return f.logs.count("the lock expired before teleport accepted it") == 1 }, "not given up")
	// Written through the checkpoint writer, shortly after.
	eventually(t, 5*time.Second, func() bool { return f.lockState("alice").Lock == nil }, "the given-up lock is still stored")
	_, locks := f.locker.state()
	require.Empty(t, locks)
}

// A brute-force burst costs no fsync per failed login: the policy's writes
// go through the checkpoint writer, which commits many users' counters in
// one transaction, and each user that crossed the threshold is locked once.
func TestABurstOfFailuresIsGroupCommitted(t *testing.T) {
	f := newFixture(t)
	r := f.start()
	const users, failures = 50, 1000
	now := f.clock.Now()
	evs := make([]*auditlogpb.EventUnstructured, 0, failures)
	for i := range failures {
		evs = append(evs, failure(fmt.Sprintf("user-%02d", i%users), fmt.Sprintf("ev-%04d", i), now.Add(-time.Duration(failures-i)*time.Millisecond)))
	}
	r.observe(evs...)
	eventually(t, 10*time.Second, func() bool { _, locks := f.locker.state(); return len(locks) == users }, "one lock per user")
	_, locks := f.locker.state()
	byUser := map[string]int{}
	for _, l := range locks {
		byUser[l.Spec.Target.User]++
	}
	require.Len(t, byUser, users)
	for u, n := range byUser {
		require.Equal(t, 1, n, u)
	}
	commits := f.store.Commits()
	t.Logf("%d failed logins of %d users: %d state file transactions", failures, users, commits)
	require.Less(t, commits, uint64(failures/5), "transactions for %d failed logins", failures)
}

// Exempt users are never locked; beyond --lock-max-per-period locks within
// the period, the policy counts and alerts instead of locking.
func TestExemptUsersAndTheCapOnLocks(t *testing.T) {
	f := newFixture(t)
	f.deps.Exempt = map[string]bool{"breakglass": true}
	f.deps.MaxLocks = 2
	r := f.start()
	base := f.clock.ago(5 * time.Second)
	var evs []*auditlogpb.EventUnstructured
	for u, user := range []string{"breakglass", "u1", "u2", "u3", "u4"} {
		for i := range 3 {
			evs = append(evs, failure(user, fmt.Sprint(user, i), base.Add(time.Duration(u*3+i)*time.Millisecond)))
		}
	}
	r.observe(evs...)
	eventually(t, 5*time.Second, func() bool { _, locks := f.locker.state(); return len(locks) == 2 }, "the first two locks are written")
	eventually(t, 5*time.Second, func() bool { return testutil.ToFloat64(f.m.LocksCapped) == 2 }, "the next two are held back")
	_, locks := f.locker.state()
	for _, l := range locks {
		require.NotContains(t, l.GetName(), "breakglass", "an exempt user is never locked")
	}
	require.Equal(t, 2, f.logs.count(`"level":"error"`, "not locking: --lock-max-per-period"))
	require.Zero(t, f.logs.count(`"level":"error"`, `"user":`), "no user name above debug")
}

// A failed login's user is whatever was typed at the prompt. A name of
// 40,000 characters once made every checkpoint write fail (bbolt's key too
// large); now such a name is answered uncounted, not logged in full, and
// the other users are counted as before.
func TestUserNamesLongerThanAnyAccountsAreNotCounted(t *testing.T) {
	f := newFixture(t)
	r := f.start()
	base := f.clock.ago(10 * time.Second)
	long := strings.Repeat("x", 40_000)
	atMax := strings.Repeat("y", persistence.MaxUserName)
	var evs []*auditlogpb.EventUnstructured
	for i := range 3 {
		at := base.Add(time.Duration(i) * time.Second)
		evs = append(evs, failure(long, fmt.Sprint("l", i), at), failure(atMax, fmt.Sprint("m", i), at))
	}
	r.observe(evs...)
	requireOneLock(t, f, atMax, base.Add(2*time.Second))
	require.Equal(t, 3.0, testutil.ToFloat64(f.m.LockFailuresIgnored.WithLabelValues("user_name_too_long")))
	require.Equal(t, 3, f.logs.count("longer than any account", `"user_bytes":40000`))
	require.Zero(t, f.logs.count(long[:1000]), "the name is cut short in logs")
}

// A user's state that can never be written (messages.SaveFailed) does not
// hold up the poller: the failures that waited for it are answered,
// uncounted, and that user's state stays what is on disk.
func TestAStateThatCannotBeWrittenIsAnsweredUncounted(t *testing.T) {
	f := newFixture(t)
	f.unwritable = map[string]bool{"mallory": true}
	r := f.start()
	base := f.clock.ago(10 * time.Second)
	r.observe(failure("mallory", "m1", base), failure("alice", "a1", base), failure("mallory", "m2", base.Add(time.Second)),
		failure("alice", "a2", base.Add(time.Second)), failure("mallory", "m3", base.Add(2*time.Second)),
		failure("alice", "a3", base.Add(2*time.Second)))
	requireOneLock(t, f, "alice", base.Add(2*time.Second))
	_, ok, err := f.store.LockState("mallory")
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, 3.0, testutil.ToFloat64(f.m.LockFailuresIgnored.WithLabelValues("unwritable")))
	require.Positive(t, f.logs.count("cannot be stored"))
}
