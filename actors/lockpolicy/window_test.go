package lockpolicy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// adder feeds failures of one user to a window; each gets a fresh ID.
type adder struct {
	w   lockpolicy.Window
	s   persistence.LockState
	now time.Time
	n   int
}

func newAdder(w lockpolicy.Window, now time.Time) *adder {
	return &adder{w: w, s: persistence.LockState{User: "alice"}, now: now}
}

func (a *adder) add(ts ...time.Time) []lockpolicy.Verdict {
	var out []lockpolicy.Verdict
	for _, t := range ts {
		a.n++
		out = append(out, a.w.Add(&a.s, persistence.LoginFailure{ID: fmt.Sprint("e", a.n), Time: t}, a.now))
	}
	return out
}

func (a *adder) last(ts ...time.Time) lockpolicy.Verdict {
	v := a.add(ts...)
	return v[len(v)-1]
}

const (
	counted = lockpolicy.Counted
	ignored = lockpolicy.Ignored
	lock    = lockpolicy.Lock
	locked  = lockpolicy.Locked
	old     = lockpolicy.Old
	lapsed  = lockpolicy.Lapsed
)

var minute = lockpolicy.Window{Count: 3, Period: time.Minute, For: 30 * time.Minute}

func TestWindowBoundaries(t *testing.T) {
	// Three failures spanning just under the period lock; the lock expires
	// For after the third one, and the counted failures are gone.
	a := newAdder(minute, at(time.Minute))
	require.Equal(t, []lockpolicy.Verdict{counted, counted, lock}, a.add(at(0), at(30*time.Second), at(time.Minute-time.Millisecond)))
	require.Equal(t, &persistence.UserLock{Trigger: at(time.Minute - time.Millisecond), Count: 3, Expires: at(31*time.Minute - time.Millisecond)}, a.s.Lock)
	require.Empty(t, a.s.Failures)
	require.True(t, a.s.Lock.Pending())

	// Exactly one period apart is outside the window (it is half-open).
	a = newAdder(minute, at(time.Minute))
	require.Equal(t, []lockpolicy.Verdict{counted, counted, counted}, a.add(at(0), at(30*time.Second), at(time.Minute)))
	require.Nil(t, a.s.Lock)
	// The next one makes a window of the last three.
	require.Equal(t, lock, a.last(at(time.Minute+time.Second)))
	require.Equal(t, 3, a.s.Lock.Count)

	// Fewer failures than the count never lock, however close.
	a = newAdder(minute, at(time.Second))
	require.Equal(t, []lockpolicy.Verdict{counted, counted}, a.add(at(0), at(0)))
}

func TestWindowOldFailuresNeverLock(t *testing.T) {
	now := at(10 * time.Minute)
	// A backfill from hours ago: not even remembered.
	a := newAdder(minute, now)
	require.Equal(t, []lockpolicy.Verdict{ignored, ignored, ignored}, a.add(at(-2*time.Hour), at(-2*time.Hour+time.Second), at(-2*time.Hour+2*time.Second)))
	require.True(t, a.s.Empty())

	// Within two periods: remembered (they may still join a window with a
	// fresh failure) but a window that ended a period ago or more locks no
	// one.
	a = newAdder(minute, now)
	require.Equal(t, []lockpolicy.Verdict{counted, counted, old}, a.add(now.Add(-100*time.Second), now.Add(-90*time.Second), now.Add(-time.Minute)))
	require.Nil(t, a.s.Lock)
	// A fresh failure within the period of two remembered ones locks, the
	// older one counting towards it: the poller may lag behind now.
	a = newAdder(minute, now)
	require.Equal(t, []lockpolicy.Verdict{counted, counted, lock}, a.add(now.Add(-70*time.Second), now.Add(-30*time.Second), now.Add(-15*time.Second)))
	require.Equal(t, now.Add(-15*time.Second), a.s.Lock.Trigger)
	// A window whose last failure is just under a period old still locks.
	a = newAdder(minute, now)
	require.Equal(t, lock, a.last(now.Add(-80*time.Second), now.Add(-70*time.Second), now.Add(-time.Minute+time.Millisecond)))

	// A lock that would have expired by now is not written.
	short := lockpolicy.Window{Count: 3, Period: time.Minute, For: 10 * time.Second}
	a = newAdder(short, now)
	require.Equal(t, lapsed, a.last(now.Add(-40*time.Second), now.Add(-35*time.Second), now.Add(-30*time.Second)))
	require.Nil(t, a.s.Lock)
}

func TestWindowOutOfOrderFailures(t *testing.T) {
	w := lockpolicy.Window{Count: 3, Period: 10 * time.Second, For: time.Minute}
	a := newAdder(w, at(20*time.Second))
	// 19, 11 and 5 span 14s: no window. 12 arrives late: 11, 12, 19 span 8s.
	require.Equal(t, []lockpolicy.Verdict{counted, counted, counted, lock},
		a.add(at(19*time.Second), at(11*time.Second), at(5*time.Second), at(12*time.Second)))
	require.Equal(t, at(19*time.Second), a.s.Lock.Trigger, "the newest failure of the window")
	require.Equal(t, 3, a.s.Lock.Count)
	require.Equal(t, at(79*time.Second), a.s.Lock.Expires)
	require.Empty(t, a.s.Failures, "failures up to the trigger are accounted for")

	// A late failure before the trigger of our lock changes nothing.
	require.Equal(t, ignored, a.last(at(15*time.Second)))

	// The count uses every failure within the period of the trigger.
	a = newAdder(lockpolicy.Window{Count: 3, Period: 10 * time.Second}, at(20*time.Second))
	require.Equal(t, []lockpolicy.Verdict{counted, counted, counted, lock},
		a.add(at(18*time.Second), at(3*time.Second), at(15*time.Second), at(10*time.Second)))
	require.Equal(t, 3, a.s.Lock.Count)
	require.True(t, a.s.Lock.Expires.IsZero(), "no expiry without For")
}

func TestWindowUsersAreCountedApart(t *testing.T) {
	now := at(time.Minute)
	states := map[string]*persistence.LockState{}
	verdicts := map[string]lockpolicy.Verdict{}
	for i, u := range []string{"alice", "bob", "alice", "carol", "bob", "alice", "bob"} {
		s := states[u]
		if s == nil {
			s = &persistence.LockState{User: u}
			states[u] = s
		}
		verdicts[u] = minute.Add(s, persistence.LoginFailure{ID: fmt.Sprint(i), Time: at(time.Duration(i) * time.Second)}, now)
	}
	require.Equal(t, map[string]lockpolicy.Verdict{"alice": lock, "bob": lock, "carol": counted}, verdicts)
	require.Equal(t, at(5*time.Second), states["alice"].Lock.Trigger)
	require.Equal(t, at(6*time.Second), states["bob"].Lock.Trigger)
	require.Len(t, states["carol"].Failures, 1)
}

func TestWindowReplaysCountOnce(t *testing.T) {
	a := newAdder(minute, at(time.Minute))
	f := persistence.LoginFailure{ID: "same", Time: at(time.Second)}
	require.Equal(t, counted, minute.Add(&a.s, f, a.now))
	require.Equal(t, ignored, minute.Add(&a.s, f, a.now))
	require.Equal(t, ignored, minute.Add(&a.s, f, a.now))
	require.Len(t, a.s.Failures, 1)
}

func TestWindowIdempotentWhileLockedAndRefreshedWhenExpired(t *testing.T) {
	a := newAdder(minute, at(time.Minute))
	require.Equal(t, lock, a.last(at(10*time.Second), at(20*time.Second), at(30*time.Second)))
	// While the lock is being written, more failures lock no one again.
	require.Equal(t, []lockpolicy.Verdict{counted, counted, locked}, a.add(at(40*time.Second), at(41*time.Second), at(42*time.Second)))
	first := *a.s.Lock
	a.s.Lock.Written = a.now
	// Nor once it is written and in force.
	a.now = at(10 * time.Minute)
	require.Equal(t, []lockpolicy.Verdict{counted, counted, locked, locked}, a.add(at(9*time.Minute), at(9*time.Minute+1), at(9*time.Minute+2), at(9*time.Minute+3)))
	require.Equal(t, first.Trigger, a.s.Lock.Trigger)
	require.LessOrEqual(t, len(a.s.Failures), 16, "failures while locked are bounded")

	// Expired (30m after 30s): the next full window locks again.
	a.now = at(40 * time.Minute)
	require.Equal(t, []lockpolicy.Verdict{counted, counted, lock}, a.add(at(39*time.Minute), at(39*time.Minute+1), at(39*time.Minute+2)))
	require.Equal(t, at(69*time.Minute+2), a.s.Lock.Expires)

	// A pending lock that expired before it was written does not hold.
	a.s.Lock = &persistence.UserLock{Trigger: at(39 * time.Minute), Expires: at(39*time.Minute + time.Second)}
	require.Equal(t, lock, a.last(at(39*time.Minute+3), at(39*time.Minute+4), at(39*time.Minute+5)))
}

func TestWindowForeverLockIsRewrittenAfterRefreshAfter(t *testing.T) {
	w := lockpolicy.Window{Count: 2, Period: time.Minute}
	a := newAdder(w, at(time.Minute))
	require.Equal(t, lock, a.last(at(0), at(time.Second)))
	a.s.Lock.Written = at(time.Minute)
	a.now = at(time.Minute + lockpolicy.RefreshAfter - time.Second)
	require.Equal(t, locked, a.last(a.now.Add(-2*time.Second), a.now.Add(-time.Second)))
	// The failures while it held count: the next one completes a window.
	a.now = at(time.Minute + lockpolicy.RefreshAfter)
	require.Equal(t, []lockpolicy.Verdict{lock, counted}, a.add(a.now.Add(-time.Second), a.now))
	require.True(t, a.s.Lock.Pending())
	require.Equal(t, a.now.Add(-time.Second), a.s.Lock.Trigger)
}

func TestWindowPrune(t *testing.T) {
	a := newAdder(minute, at(time.Minute))
	a.add(at(50*time.Second), at(55*time.Second))
	require.False(t, minute.Prune(&a.s, at(2*time.Minute)), "still within two periods")
	require.True(t, minute.Prune(&a.s, at(2*time.Minute+51*time.Second)))
	require.Len(t, a.s.Failures, 1)
	require.True(t, minute.Prune(&a.s, at(3*time.Minute)))
	require.True(t, a.s.Empty())

	// Our lock is kept while pending, and while it holds.
	a = newAdder(minute, at(time.Minute))
	require.Equal(t, lock, a.last(at(50*time.Second), at(55*time.Second), at(56*time.Second)))
	require.False(t, minute.Prune(&a.s, at(2*time.Hour)), "pending: the actor gives it up")
	a.s.Lock.Written = at(time.Minute)
	require.False(t, minute.Prune(&a.s, at(20*time.Minute)), "in force")
	require.True(t, minute.Prune(&a.s, at(40*time.Minute)), "expired")
	require.True(t, a.s.Empty())
}
