package persistence_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

func TestLockStatesRoundTripAndSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := persistence.Open(dir)
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Millisecond)
	bob := persistence.LockState{User: "bob@example.com", Failures: []persistence.LoginFailure{
		{ID: "e1", Time: now.Add(-2 * time.Second)}, {ID: "e2", Time: now.Add(-time.Second)},
	}}
	alice := persistence.LockState{User: "alice", Lock: &persistence.UserLock{Trigger: now, Count: 3}}
	require.NoError(t, s.Apply([]persistence.Write{persistence.LockStateWrite(bob), persistence.LockStateWrite(alice)}))
	require.NoError(t, s.Close())

	s, err = persistence.Open(dir)
	require.NoError(t, err)
	defer s.Close()
	all, err := s.LockStates()
	require.NoError(t, err)
	require.Equal(t, []persistence.LockState{alice, bob}, all, "in user order")
	require.True(t, all[0].Lock.Pending(), "a lock never written is pending")
	require.True(t, all[0].Lock.Expires.IsZero(), "no expiry stays no expiry")

	alice.Lock.Written = now
	require.NoError(t, s.Apply([]persistence.Write{persistence.LockStateWrite(alice)}))
	got, ok, err := s.LockState("alice")
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, got.Lock.Pending())

	// An empty state is deleted rather than stored.
	require.NoError(t, s.Apply([]persistence.Write{persistence.LockStateWrite(persistence.LockState{User: "bob@example.com"})}))
	_, ok, err = s.LockState("bob@example.com")
	require.NoError(t, err)
	require.False(t, ok)
	all, err = s.LockStates()
	require.NoError(t, err)
	require.Len(t, all, 1)
}

func TestUnreadableLockStateIsCorruption(t *testing.T) {
	s, err := persistence.Open(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Apply([]persistence.Write{{Bucket: persistence.BucketLockPolicy, Key: "eve", Value: []byte("{not json")}}))
	_, err = s.LockStates()
	var corrupt *persistence.CorruptError
	require.True(t, errors.As(err, &corrupt), "got %v", err)
	require.ErrorContains(t, err, "lock-policy/eve")
	_, _, err = s.LockState("eve")
	require.True(t, errors.As(err, &corrupt), "got %v", err)
}
