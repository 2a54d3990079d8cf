package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

var defaultSkip = map[string]bool{"print": true, "desktop.recording": true}

func TestRecordingsStreamedAtAnyConcurrency(t *testing.T) {
	t.Parallel()
	for _, concurrency := range []int{1, 4} {
		t.Run(fmt.Sprint("concurrency ", concurrency), func(t *testing.T) {
			e, evs := seededEnv(t, 300, 20)
			e.AddSession("long-session", 3000, e.T0.Add(10*time.Second))
			e.AddSession("late-session", 50, e.T0.Add(20*time.Second))
			e.Teleport.SetRecordingAvailableAfter("late-session", 2)
			require.GreaterOrEqual(t, len(e.Recordings), 5, "the seed has a few uploads of its own")
			p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--concurrency", fmt.Sprint(concurrency))...)
			require.Equal(t, 0, p.Wait(t, 2*time.Minute))
			require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil))
			require.Zero(t, e.SessionsDelivered(defaultSkip), "duplicates in a clean run")
		})
	}
}

func TestEmptySkipSessionTypesForwardsPrintEvents(t *testing.T) {
	e := parallelEnv(t)
	e.AddSession("printing", 40, e.T0.Add(time.Second))
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--skip-session-types", "")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Zero(t, e.SessionsDelivered(nil))
	require.Len(t, e.Fluentd.Records(harness.SessionTag("printing")), 40)
}

func TestMissingRecordingIsGivenUpAndTheRestArrive(t *testing.T) {
	e, evs := seededEnv(t, 100, 21)
	up := &apievents.SessionUpload{
		Metadata:        apievents.Metadata{ID: "upload-gone", Type: "session.upload", Code: "T2005I", Time: e.T0.Add(5 * time.Second)},
		SessionMetadata: apievents.SessionMetadata{SessionID: harness.SID("gone")},
	}
	require.NoError(t, e.Teleport.AddEvents(up))
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	// Caught up, the missing recording given up and named: status 3.
	require.Equal(t, 3, p.Wait(t, time.Minute), p.Output())
	require.Contains(t, p.Output(), "1 session recording(s) given up: "+harness.SID("gone"))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil))
	require.Zero(t, e.SessionsDelivered(defaultSkip))
	require.Contains(t, p.Output(), "session recording not found; giving up on it")

	// A later run has nothing new to send, but the recording is still
	// given up (until sessions retry or drop): still status 3, naming it.
	// (Found by the fault explorer: a service gave a recording up, and the
	// last run, with --exit-on-last-event, exited 0.)
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 3, p.Wait(t, time.Minute), p.Output())
	require.Contains(t, p.Output(), "1 session recording(s) given up: "+harness.SID("gone"))
}

func TestKillNineMidRecordingLosesNothing(t *testing.T) {
	e, evs := seededEnv(t, 100, 22)
	for i := range 3 {
		e.AddSession(fmt.Sprintf("big-%d", i), 4000, e.T0.Add(time.Duration(30+i)*time.Second))
	}
	e.Fluentd.SetLatency(time.Millisecond) // stretch the run so kills land mid-recording
	rng := rand.New(rand.NewPCG(22, 22))
	const kills = 4
	for range kills {
		p := harness.Run(t, binary, nil, e.Args("--skip-session-types", "")...)
		time.Sleep(time.Duration(800+rng.IntN(1500)) * time.Millisecond)
		p.Signal(9)
		p.Wait(t, 10*time.Second)
	}
	e.Fluentd.SetLatency(0)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--skip-session-types", "")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute))
	require.LessOrEqual(t, harness.Delivered(t, e.Fluentd, evs, nil), kills*window)
	dups := e.SessionsDelivered(nil)
	t.Logf("%d duplicate session events after %d kills", dups, kills)
	// Each kill resends at most what each player had in flight.
	require.LessOrEqual(t, dups, kills*5*16)
}
