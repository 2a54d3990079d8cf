package e2e

import (
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
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

// in_forward drops a message over its chunk_size_limit without an ack.
// Measured against a real Fluentd 1.18 with chunk_size_limit 16k, 0 of
// 3,000 events arrived in 90 s: every batch of 100 was retried unchanged
// for ever. Now the messages are halved until they are answered, the one
// event too large alone is dead-lettered naming chunk_size_limit, and the
// run ends.
func TestForwardBatchesOverChunkSizeLimitAreHalvedNotRetriedForEver(t *testing.T) {
	t.Parallel()
	e := forwardEnv(t, "")
	e.Fluentd.SetForwardFaults(fluentdsrv.ForwardFaults{ChunkSizeLimit: 16 << 10})
	evs := e.Seed(3000, 26)
	huge := failedLogin(strings.Repeat("u", 20_000), 1, e.T0.Add(1500*time.Second+time.Millisecond))
	require.NoError(t, e.Teleport.AddEvents(huge))
	began := time.Now()
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 3, p.Wait(t, 3*time.Minute), "caught up with one event dead-lettered: %s", harness.Tail(p.Output(), 20))
	t.Logf("%d events in %s, %d messages dropped by the receiver", len(evs)+1, time.Since(began).Round(time.Second), e.Fluentd.ForwardDropped())
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, map[string]bool{huge.GetID(): true}), "duplicates")
	require.Zero(t, e.SessionsDelivered(defaultSkip), "recording duplicates")
	letters, bad, err := persistence.NewDeadLetters(persistence.Dir(e.Storage, e.Teleport.Addr())).Letters()
	require.NoError(t, err)
	require.Empty(t, bad)
	require.Len(t, letters, 1)
	require.Equal(t, huge.GetID(), letters[0].EventID)
	require.Contains(t, letters[0].Reason, "chunk_size_limit")
}

// Measured black-box: a receiver answering 400 to everything; the breaker
// opened after 9 letters and took them back; SIGTERM; a restart against a
// fixed receiver with --exit-on-last-event delivered 499 of 500 events and
// exited 0 while the file still held the 9 letters: 8 of them delivered in
// the second run (a replay would send them twice), and the first event of
// the log, whose letter the checkpoint had passed, never sent again. Taken
// back letters are events still owed: the next start sends them, once,
// and takes them out of the file.
func TestLettersTakenBackSurviveARestartAsEventsOwed(t *testing.T) {
	e, evs := seededEnv(t, 500, 27)
	var rejectAll atomic.Bool
	rejectAll.Store(true)
	e.Fluentd.RejectWhere(400, func(map[string]any) bool { return rejectAll.Load() })
	args := e.Args("--skip-session-types", "print,desktop.recording,session.start,session.end,session.data,resize")
	p := harness.Run(t, binary, nil, args...)
	harness.WaitFor(t, time.Minute, "the breaker to open", func() bool {
		return strings.Contains(p.Output(), "taking back the dead letters")
	})
	p.Signal(syscall.SIGTERM)
	p.Wait(t, time.Minute)
	dir := persistence.Dir(e.Storage, e.Teleport.Addr())
	letters, _, err := persistence.NewDeadLetters(dir).Letters()
	require.NoError(t, err)
	require.NotEmpty(t, letters, "the letters of the run stay in the file until delivered")

	rejectAll.Store(false)
	p = harness.Run(t, binary, nil, append(args, "--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute), harness.Tail(p.Output(), 20))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "an event delivered twice")
	letters, bad, err := persistence.NewDeadLetters(dir).Letters()
	require.NoError(t, err)
	require.Empty(t, bad)
	require.Empty(t, letters, "letters of events delivered stay in the file")
	out := harness.Run(t, binary, nil, append([]string{"status"}, args[1:]...)...)
	require.Equal(t, 0, out.Wait(t, time.Minute), out.Output())
	require.Regexp(t, `dead letters +(none|0)`, out.Output())
}
