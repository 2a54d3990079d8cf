package e2e

import (
	"strings"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// A failed login whose user name is 40,000 characters long (whatever the
// person at the login prompt typed) once made every checkpoint write fail
// with bbolt's "key too large": the daemon never exited with
// --exit-on-last-event, and after a restart the same event wedged it again.
// Its event ID is as long, for the trailing cursor's record of what it
// handed out.
func TestAbsurdUserNameStopsNoCheckpoint(t *testing.T) {
	e, evs := seededEnv(t, 500, 25)
	long := strings.Repeat("x", 40_000)
	// Recent, so that the lock policy counts it (older than --lock-period
	// it would not matter).
	poison := failedLogin(long, 1, time.Now().Add(-30*time.Second))
	require.NoError(t, e.Teleport.AddEvents(poison))
	evs = append(evs, poison)
	args := e.Args("--exit-on-last-event", "--lock-enabled", "--late-event-lag", "1s")

	p := harness.Run(t, binary, nil, args...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "duplicates in a clean run")
	require.NotContains(t, p.Output(), long[:1000], "the name is cut short in logs")

	// The checkpoint was written: a second run sends nothing again.
	p = harness.Run(t, binary, nil, args...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Equal(t, len(evs), e.Audit())

	// Enough failures of that name to lock it: the lock is keyed by a
	// digest, and the long name is not a Teleport user a lock could name.
	var more []apievents.AuditEvent
	for i := 2; i <= 4; i++ {
		more = append(more, failedLogin(long, i, time.Now().Add(-time.Duration(5-i)*time.Second)))
	}
	// The failures above are within a minute of the first one, which the
	// default --lock-period (1m) counts with them.
	require.NoError(t, e.Teleport.AddEvents(more...))
	p = harness.Run(t, binary, nil, args...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Zero(t, harness.Delivered(t, e.Fluentd, append(evs, more...), nil))
}
