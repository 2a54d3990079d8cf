package persistence

import (
	"encoding/json"
	"fmt"
	"time"
)

// BucketLockPolicy maps a Teleport user to its LockState. The lock policy
// keeps its counters here so that a restart between two failed logins does
// not reset the count, and remembers the locks it wrote so that replayed or
// further failures do not lock the user again.
const BucketLockPolicy = "lock-policy"

// LoginFailure is one failed user.login event.
type LoginFailure struct {
	// ID is the event's ID: an event replayed after a restart is counted
	// once.
	ID   string    `json:"id"`
	Time time.Time `json:"time"` // event time
}

// UserLock is a lock the lock policy decided on.
type UserLock struct {
	// Trigger is the event time of the failure that completed the count.
	// Failures at or before it are accounted for by this lock.
	Trigger time.Time `json:"trigger"`
	// Count is the number of failures within the period before Trigger.
	Count int `json:"count"`
	// Expires is when the lock ends; zero means never.
	Expires time.Time `json:"expires,omitzero"`
	// Written is when Teleport accepted the lock (wall clock). Zero means
	// the lock is pending: decided, durable here, and still to be written.
	Written time.Time `json:"written,omitzero"`
}

// Pending reports whether the lock is still to be written to Teleport.
func (l UserLock) Pending() bool { return l.Written.IsZero() }

// LockState is what the lock policy knows of one user.
type LockState struct {
	User string `json:"user"`
	// Failures still counting towards a lock, by event time.
	Failures []LoginFailure `json:"failures,omitempty"`
	Lock     *UserLock      `json:"lock,omitempty"`
}

// Empty reports whether there is nothing left to remember about the user.
func (s LockState) Empty() bool { return len(s.Failures) == 0 && s.Lock == nil }

// LockStateWrite stores s, or deletes it once it is empty.
func LockStateWrite(s LockState) Write {
	if s.Empty() {
		return del(BucketLockPolicy, s.User)
	}
	return putJSON(BucketLockPolicy, s.User, s)
}

// LockState returns the stored state of user.
func (s *Store) LockState(user string) (LockState, bool, error) {
	var st LockState
	ok, err := s.getJSON(BucketLockPolicy, user, &st)
	return st, ok, err
}

// LockStates returns the state of every user the lock policy remembers, in
// user order. The set is small: users with recent failures or our locks.
func (s *Store) LockStates() ([]LockState, error) {
	var (
		out     []LockState
		decoErr error
	)
	err := s.Scan(BucketLockPolicy, "", 0, func(key string, raw []byte) bool {
		var st LockState
		if err := json.Unmarshal(raw, &st); err != nil {
			decoErr = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: %w", BucketLockPolicy, key, err)}
			return false
		}
		st.User = key // the key is authoritative
		out = append(out, st)
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, decoErr
}
