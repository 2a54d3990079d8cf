package lockpolicy

import (
	"slices"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// RefreshAfter is how long after writing a lock that is still in force the
// policy leaves the user alone. A user who then completes another window of
// failures gets the lock written again (with a new expiry): a no-op if it is
// still there, and it restores a lock that an administrator lifted while the
// failures go on, which the policy cannot see otherwise (its role need not
// read locks).
const RefreshAfter = time.Hour

// Verdict is what one failure leads to.
type Verdict int

const (
	// Counted: the failure was recorded; no lock is due.
	Counted Verdict = iota
	// Ignored: the failure is a replay, accounted for by our lock, or too
	// old to matter; nothing changed.
	Ignored
	// Lock: the failure completed the count; State.Lock is the new,
	// pending lock.
	Lock
	// Locked: the count is complete but our lock is in force (or still
	// being written), so the user is not locked again.
	Locked
	// Old: the count is complete but only in the past: the newest failure
	// of the window is older than the period, relative to now.
	Old
	// Lapsed: the lock would already have expired.
	Lapsed
)

var verdictNames = [...]string{"counted", "ignored", "lock", "locked", "old", "lapsed"}

func (v Verdict) String() string { return verdictNames[v] }

// Window counts failures per user in a sliding window of event time.
//
// Count failures whose event times lie within less than Period of each
// other lock the user; the window is half-open, so two failures exactly
// Period apart are not in the same window. The failure that completes the
// count must be less than Period old relative to now: replaying old events
// (a backfill from an old --start-time) locks no one.
type Window struct {
	Count  int
	Period time.Duration
	For    time.Duration // lock duration; zero: no expiry
}

// horizon is the oldest event time that can still matter at now: a failure
// at f can only be part of a window whose newest failure is before
// f+Period, and that one must be after now-Period.
func (w Window) horizon(now time.Time) time.Time { return now.Add(-2 * w.Period) }

// keep bounds the failures remembered per user. Without a lock at most
// about 2*Count fit before the horizon; more means failures keep coming
// while the user is locked, and the newest ones are all that matter.
func (w Window) keep() int { return max(4*w.Count, 16) }

// Add records failure f in s, at wall time now, and says what it leads to.
// With Lock, s.Lock is the new lock and the failures it accounts for are
// gone from s. s changed unless the verdict is Ignored.
func (w Window) Add(s *persistence.LockState, f persistence.LoginFailure, now time.Time) Verdict {
	if !f.Time.After(w.horizon(now)) {
		return Ignored
	}
	if s.Lock != nil && !f.Time.After(s.Lock.Trigger) {
		return Ignored
	}
	if slices.ContainsFunc(s.Failures, func(g persistence.LoginFailure) bool { return g.ID == f.ID }) {
		return Ignored
	}
	i, _ := slices.BinarySearchFunc(s.Failures, f, compareFailures)
	s.Failures = slices.Insert(s.Failures, i, f)
	w.prune(s, now)

	trigger, ok := w.latestWindow(s.Failures)
	switch {
	case !ok:
		return Counted
	case !trigger.After(now.Add(-w.Period)):
		return Old
	case w.holds(s.Lock, now):
		return Locked
	}
	lock := &persistence.UserLock{Trigger: trigger}
	if w.For > 0 {
		lock.Expires = trigger.Add(w.For)
		if !lock.Expires.After(now) {
			return Lapsed
		}
	}
	from := trigger.Add(-w.Period)
	for _, g := range s.Failures {
		if g.Time.After(from) && !g.Time.After(trigger) {
			lock.Count++
		}
	}
	s.Lock = lock
	s.Failures = slices.DeleteFunc(s.Failures, func(g persistence.LoginFailure) bool { return !g.Time.After(trigger) })
	return Lock
}

// latestWindow returns the newest failure of the latest run of Count
// failures spanning less than Period. Failures are sorted by time.
func (w Window) latestWindow(fs []persistence.LoginFailure) (time.Time, bool) {
	n := max(w.Count, 1)
	for i := len(fs) - n; i >= 0; i-- {
		if fs[i+n-1].Time.Sub(fs[i].Time) < w.Period {
			return fs[i+n-1].Time, true
		}
	}
	return time.Time{}, false
}

// holds reports whether our lock l keeps the user from being locked again
// at now: while it is being written (unless it expired meanwhile), and
// while it is in force and was written less than RefreshAfter ago.
func (w Window) holds(l *persistence.UserLock, now time.Time) bool {
	if l == nil || w.expired(l, now) {
		return false
	}
	return l.Pending() || now.Sub(l.Written) < RefreshAfter
}

func (w Window) expired(l *persistence.UserLock, now time.Time) bool {
	return !l.Expires.IsZero() && !l.Expires.After(now)
}

// Prune forgets, at now, what can no longer lead to a lock: failures before
// the horizon, and our lock once it no longer holds and its trigger is
// before the horizon (failures it accounts for are then ignored as old
// anyway). A pending lock is kept: the caller gives it up. It reports
// whether s changed.
func (w Window) Prune(s *persistence.LockState, now time.Time) bool {
	n, had := len(s.Failures), s.Lock
	w.prune(s, now)
	if l := s.Lock; l != nil && !l.Pending() && !w.holds(l, now) && !l.Trigger.After(w.horizon(now)) {
		s.Lock = nil
	}
	return len(s.Failures) != n || s.Lock != had
}

func (w Window) prune(s *persistence.LockState, now time.Time) {
	h := w.horizon(now)
	i := 0
	for i < len(s.Failures) && !s.Failures[i].Time.After(h) {
		i++
	}
	i = max(i, len(s.Failures)-w.keep())
	if i > 0 {
		s.Failures = slices.Delete(s.Failures, 0, i)
	}
}

func compareFailures(a, b persistence.LoginFailure) int {
	if c := a.Time.Compare(b.Time); c != 0 {
		return c
	}
	switch {
	case a.ID < b.ID:
		return -1
	case a.ID > b.ID:
		return 1
	}
	return 0
}
