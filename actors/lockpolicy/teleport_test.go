package lockpolicy_test

import (
	"context"
	"testing"
	"time"

	"github.com/gravitational/teleport/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// TestLocksThroughTheRealClient runs the policy against the test Teleport
// server with the unmodified teleport/api client: transient failures and a
// missing permission come back as the errors the policy decides on.
func TestLocksThroughTheRealClient(t *testing.T) {
	srv, pki := teleportsrv.StartNew(t)
	clt := teleportsrv.Connect(t, srv, teleportsrv.KeyPair(pki))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := clt.Ping(ctx)
	require.NoError(t, err)

	f := newFixture(t)
	f.deps.Locker = clt
	f.deps.For = 30 * time.Minute
	srv.FailNext("UpsertLock", 2, codes.Unavailable)
	r := f.start()

	// Failures of two users; only alice reaches the count.
	base := f.clock.ago(20 * time.Second)
	r.observe(
		failure("alice", "a1", base),
		failure("bob", "b1", base.Add(time.Second)),
		failure("alice", "a2", base.Add(2*time.Second)),
		failure("bob", "b2", base.Add(3*time.Second)),
		login("bob", "b3", base.Add(4*time.Second), true), // not a failure: not counted
		failure("alice", "a3", base.Add(5*time.Second)),
	)
	eventually(t, 10*time.Second, func() bool { return len(srv.Locks()) > 0 }, "no lock reached the server")
	eventually(t, 5*time.Second, func() bool { l := f.lockState("alice").Lock; return l != nil && !l.Pending() }, "not recorded as written")
	require.Equal(t, 3, srv.Calls("UpsertLock"), "two unavailable answers, then the lock")
	locks := srv.Locks()
	require.Len(t, locks, 1, "exactly one lock")
	l := locks[0]
	require.Equal(t, "event-handler-auto-lock-alice", l.GetName())
	require.Equal(t, types.LockTarget{User: "alice"}, l.Target())
	require.NotNil(t, l.LockExpiry())
	require.True(t, l.LockExpiry().Equal(base.Add(5*time.Second+30*time.Minute)), "expires %s", l.LockExpiry())
	require.Contains(t, l.Message(), "3 within 1m0s")
	got, err := clt.GetLock(ctx, "event-handler-auto-lock-alice")
	require.NoError(t, err)
	require.True(t, got.IsInForce(time.Now()))

	// A role without the lock permission: PermissionDenied is
	// AccessDenied in the client, reported once, and the lock is written
	// once the permission is there.
	srv.FailNext("UpsertLock", 3, codes.PermissionDenied)
	base = f.clock.ago(10 * time.Second)
	r.observe(failure("carol", "c1", base), failure("carol", "c2", base.Add(time.Second)), failure("carol", "c3", base.Add(2*time.Second)))
	eventually(t, 10*time.Second, func() bool { return len(srv.Locks()) == 2 }, "carol was not locked once permitted")
	require.Equal(t, 3+4, srv.Calls("UpsertLock"), "three denied, then the lock")
	require.Equal(t, 1, f.logs.count(`"level":"error"`, "lock resource with verbs create and update"))
	require.Equal(t, lockpolicy.LockName("carol"), srv.Locks()[1].GetName())
}
