package persistence_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestLockStatesRoundTripAndSurviveReopen(t *testing.T) {
	s := storetest.Open(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	bob := persistence.LockState{User: "bob@example.com", Failures: []persistence.LoginFailure{
		{ID: "e1", Time: now.Add(-2 * time.Second)}, {ID: "e2", Time: now.Add(-time.Second)},
	}}
	alice := persistence.LockState{User: "alice", Lock: &persistence.UserLock{Trigger: now, Count: 3}}
	require.NoError(t, s.Apply([]kv.Write{persistence.LockStateWrite(bob), persistence.LockStateWrite(alice)}))

	s = storetest.Reopen(t, s)
	all, err := s.LockStates()
	require.NoError(t, err)
	require.Equal(t, []persistence.LockState{alice, bob}, all, "in user order")
	require.True(t, all[0].Lock.Pending(), "a lock never written is pending")
	require.True(t, all[0].Lock.Expires.IsZero(), "no expiry stays no expiry")

	alice.Lock.Written = now
	require.NoError(t, s.Apply([]kv.Write{persistence.LockStateWrite(alice)}))
	got, ok, err := s.LockState("alice")
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, got.Lock.Pending())

	// An empty state is deleted rather than stored.
	require.NoError(t, s.Apply([]kv.Write{persistence.LockStateWrite(persistence.LockState{User: "bob@example.com"})}))
	_, ok, err = s.LockState("bob@example.com")
	require.NoError(t, err)
	require.False(t, ok)
	all, err = s.LockStates()
	require.NoError(t, err)
	require.Len(t, all, 1)
}

func TestUnreadableLockStateIsCorruption(t *testing.T) {
	s := storetest.Open(t)
	key := persistence.LockKey("eve")
	require.NoError(t, s.Apply([]kv.Write{{Bucket: persistence.BucketLockPolicy, Key: key, Value: []byte("{not json")}}))
	_, err := s.LockStates()
	var corrupt *persistence.CorruptError
	require.True(t, errors.As(err, &corrupt), "got %v", err)
	require.ErrorContains(t, err, "lock-policy/"+key)
	_, _, err = s.LockState("eve")
	require.True(t, errors.As(err, &corrupt), "got %v", err)
}

// A failed login's user is whatever was typed at the prompt: its state is
// keyed by a digest of fixed size, and the name is kept in the record.
func TestLockStatesAreKeyedByADigestOfTheName(t *testing.T) {
	s := storetest.Open(t)
	long := persistence.LockState{User: strings.Repeat("é", persistence.MaxUserName/2), // 1024 bytes
		Failures: []persistence.LoginFailure{{ID: "e1", Time: time.Unix(1, 0).UTC()}}}
	w := persistence.LockStateWrite(long)
	require.Len(t, w.Key, len(persistence.LockKey("alice")), "fixed size")
	require.NoError(t, s.Apply([]kv.Write{w}))
	got, ok, err := s.LockState(long.User)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, long, got)

	// Longer than any account's: a write that can never be applied, which
	// fails before the file is touched.
	tooLong := persistence.LockState{User: strings.Repeat("x", 40_000), Failures: long.Failures}
	err = s.Apply([]kv.Write{persistence.LockStateWrite(long), persistence.LockStateWrite(tooLong)})
	var unwritable *persistence.UnwritableError
	require.True(t, errors.As(err, &unwritable), "got %v", err)
	require.True(t, persistence.Unwritable(err))
	require.Less(t, len(err.Error()), 400, "the name is cut short in the error")
}

// Lock states written by an earlier version, keyed by the name itself, are
// moved under their digest at the next Open; a second Open moves nothing.
func TestLockStatesKeyedByNameAreMigratedAtOpen(t *testing.T) {
	s := storetest.Open(t)
	old := []kv.Write{
		// The old record's user field was not relied on: the key was.
		{Bucket: persistence.BucketLockPolicy, Key: "alice", Value: []byte(`{"user":"","failures":[{"id":"e1","time":"2026-01-02T03:04:05Z"}]}`)},
		{Bucket: persistence.BucketLockPolicy, Key: "bob", Value: []byte(`{"user":"bob","lock":{"trigger":"2026-01-02T03:04:05Z","count":3}}`)},
	}
	require.NoError(t, s.Apply(old))

	for range 2 {
		s = storetest.Reopen(t, s)
		all, err := s.LockStates()
		require.NoError(t, err)
		require.Len(t, all, 2)
		require.Equal(t, "alice", all[0].User)
		require.Len(t, all[0].Failures, 1)
		require.Equal(t, "bob", all[1].User)
		require.True(t, all[1].Lock.Pending())
		var keys []string
		require.NoError(t, s.Scan(persistence.BucketLockPolicy, "", 0, func(k string, _ []byte) bool {
			keys = append(keys, k)
			return true
		}))
		require.ElementsMatch(t, []string{persistence.LockKey("alice"), persistence.LockKey("bob")}, keys)
		got, ok, err := s.LockState("alice")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "alice", got.User)
	}
}
