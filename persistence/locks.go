package persistence

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// BucketLockPolicy maps a Teleport user to its LockState, by LockKey. The
// lock policy keeps its counters here so that a restart between two failed
// logins does not reset the count, and remembers the locks it wrote so that
// replayed or further failures do not lock the user again.
const BucketLockPolicy = "lock-policy"

// MaxUserName is the longest user name whose failed logins are counted (in
// bytes). A failed login's user is whatever was typed at the prompt;
// Teleport's own names (SSO e-mail addresses, at most 254 bytes; local and
// bot users) are far shorter, and a longer name is no account a lock could
// protect. It bounds the name kept in a LockState.
const MaxUserName = 1024

// LockKey is the key of user's state: a digest of the name, whatever its
// length (the name itself is in the record). Earlier versions keyed it by
// the name, which a long enough name made too large for bbolt: Open moves
// such keys (migrateLockKeys).
func LockKey(user string) string { return digest(user) }

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

// LockStateWrite stores s, or deletes it once it is empty. A name longer
// than MaxUserName is a write that can never be applied: the lock policy
// does not count such names.
func LockStateWrite(s LockState) kv.Write {
	key := LockKey(s.User)
	switch {
	case s.Empty():
		return del(BucketLockPolicy, key)
	case len(s.User) > MaxUserName:
		return kv.Write{Bucket: BucketLockPolicy, Key: key,
			Err: fmt.Errorf("a user name of %d bytes, longer than %d", len(s.User), MaxUserName)}
	}
	return putJSON(BucketLockPolicy, key, s)
}

// LockState returns the stored state of user.
func (s *Store) LockState(user string) (LockState, bool, error) {
	var st LockState
	ok, err := s.getJSON(BucketLockPolicy, LockKey(user), &st)
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
		if !strings.HasPrefix(key, digestPrefix) {
			st.User = key // written before LockKey, and not moved yet
		}
		out = append(out, st)
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b LockState) int { return strings.Compare(a.User, b.User) })
	return out, decoErr
}

// migrateLockKeys moves the lock states that an earlier version keyed by
// the user name itself (the name was the key, and the record's user field
// was not relied on) to LockKey, in tx. Keys already moved are left alone,
// so it runs at every Open for the price of a scan of a small bucket.
func migrateLockKeys(tx *bolt.Tx) error {
	b := tx.Bucket([]byte(BucketLockPolicy))
	if b == nil {
		return nil
	}
	type moved struct {
		old, key string
		value    []byte
	}
	var moves []moved
	err := b.ForEach(func(k, v []byte) error {
		if strings.HasPrefix(string(k), digestPrefix) {
			return nil
		}
		var st LockState
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("%s/%s: %w", BucketLockPolicy, Cut(string(k), 64), err)
		}
		st.User = string(k)
		raw, err := json.Marshal(st)
		if err != nil {
			return err
		}
		moves = append(moves, moved{old: string(k), key: LockKey(st.User), value: raw})
		return nil
	})
	for _, m := range moves { // not while iterating: bbolt forbids it
		if err == nil {
			err = b.Put([]byte(m.key), m.value)
		}
		if err == nil {
			err = b.Delete([]byte(m.old))
		}
	}
	return err
}
