package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

func TestRepeatedFailedLoginsLockTheUserOnceAcrossARestart(t *testing.T) {
	e := parallelEnv(t)
	e.Seed(20, 40)
	lockArgs := []string{"--lock-enabled", "--lock-failed-attempts-count", "3", "--lock-period", "1m", "--lock-for", "30m",
		"--types", "session.start,session.end"} // user.login is fetched for the policy anyway
	now := time.Now()
	// Two failures each for alice and bob, then a restart.
	require.NoError(t, e.Teleport.AddEvents(failedLogin("alice", 1, now.Add(-20*time.Second)), failedLogin("alice", 2, now.Add(-15*time.Second)),
		failedLogin("bob", 1, now.Add(-20*time.Second)), failedLogin("bob", 2, now.Add(-14*time.Second))))
	p := harness.Run(t, binary, nil, e.Args(lockArgs...)...)
	harness.WaitFor(t, 30*time.Second, "the failures to be read", func() bool { return e.Teleport.Calls("GetUnstructuredEvents") >= 3 })
	time.Sleep(500 * time.Millisecond) // let the checkpoint settle
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 20*time.Second))
	require.Empty(t, e.Teleport.Locks(), "two failures lock no one")

	// The third failure of alice, after the restart, locks her only.
	third := time.Now().Add(-5 * time.Second)
	require.NoError(t, e.Teleport.AddEvents(failedLogin("alice", 3, third)))
	p = harness.Run(t, binary, nil, e.Args(lockArgs...)...)
	harness.WaitFor(t, 30*time.Second, "a lock", func() bool { return len(e.Teleport.Locks()) > 0 })
	time.Sleep(time.Second) // a second lock would come now
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 20*time.Second))

	locks := e.Teleport.Locks()
	require.Len(t, locks, 1)
	lock := locks[0]
	require.Equal(t, "event-handler-auto-lock-alice", lock.GetName())
	require.Equal(t, "alice", lock.Target().User)
	require.NotNil(t, lock.LockExpiry())
	require.WithinDuration(t, third.Add(30*time.Minute), *lock.LockExpiry(), time.Second)
	require.Positive(t, e.Audit())
	for _, raw := range e.Fluentd.Records("test.log") {
		require.NotContains(t, string(raw), `"event":"user.login"`, "--types leaves logins out of what is forwarded")
	}
}

// On the export path too, failed logins reach the lock policy whatever
// --types forwards.
func TestFailedLoginsReadWithTheExportAPILockTheUser(t *testing.T) {
	e := parallelEnv(t)
	e.Teleport.SetExport(true)
	forwarded := 0
	for _, ev := range e.Seed(40, 41) {
		if ev.GetType() == "session.start" || ev.GetType() == "session.end" {
			forwarded++
		}
	}
	require.Positive(t, forwarded)
	now := time.Now()
	require.NoError(t, e.Teleport.AddEvents(failedLogin("carol", 1, now.Add(-20*time.Second)),
		failedLogin("carol", 2, now.Add(-15*time.Second)), failedLogin("carol", 3, now.Add(-10*time.Second))))
	p := harness.Run(t, binary, nil, e.Args("--export-mode", "export", "--lock-enabled", "--lock-failed-attempts-count", "3",
		"--lock-period", "1m", "--types", "session.start,session.end")...)
	harness.WaitFor(t, 30*time.Second, "a lock and the --types events", func() bool {
		return len(e.Teleport.Locks()) > 0 && e.Audit() >= forwarded
	})
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 20*time.Second), harness.Tail(p.Output(), 20))
	require.Contains(t, p.Output(), "reading the audit log with the export API")
	require.Equal(t, forwarded, e.Audit(), "only the --types events are forwarded")
	locks := e.Teleport.Locks()
	require.Len(t, locks, 1)
	require.Equal(t, "carol", locks[0].Target().User)
	require.Positive(t, e.Teleport.Calls("ExportUnstructuredEvents"))
	for _, raw := range e.Fluentd.Records("test.log") {
		require.NotContains(t, string(raw), `"event":"user.login"`, "--types leaves logins out of what is forwarded")
	}
}
