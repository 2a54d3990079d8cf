package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// addSession adds a recording of n events and the session.upload event that
// announces it, at.
func (e *env) addSession(sid string, n int, at time.Time) {
	e.t.Helper()
	rec := teleportsrv.GenerateRecording(sid, n, at.Add(-time.Minute))
	require.NoError(e.t, e.teleport.AddRecording(sid, rec...))
	e.recordings[sid] = rec
	up := &apievents.SessionUpload{
		Metadata:        apievents.Metadata{ID: "upload-" + sid, Type: "session.upload", Code: "T2005I", Time: at, ClusterName: teleportsrv.DefaultClusterName},
		SessionMetadata: apievents.SessionMetadata{SessionID: sid},
	}
	require.NoError(e.t, e.teleport.AddEvents(up))
}

// sessionsDelivered checks that every event of every seeded recording, but
// the skipped types, arrived under its session's tag, and returns the extra
// copies.
func (e *env) sessionsDelivered(skip map[string]bool) (duplicates int) {
	e.t.Helper()
	for sid, rec := range e.recordings {
		got := map[int64]int{}
		for _, raw := range e.fluentd.Records(sessionTag(sid)) {
			var r struct {
				Event string `json:"event"`
				EI    int64  `json:"ei"`
			}
			require.NoError(e.t, json.Unmarshal(raw, &r))
			require.False(e.t, skip[r.Event], "skipped type %s arrived", r.Event)
			got[r.EI]++
		}
		for _, ev := range rec {
			if skip[ev.GetType()] {
				continue
			}
			n := got[ev.GetIndex()]
			require.GreaterOrEqual(e.t, n, 1, "session %s event %d (%s) lost", sid, ev.GetIndex(), ev.GetType())
			duplicates += n - 1
		}
	}
	return duplicates
}

var defaultSkip = map[string]bool{"print": true, "desktop.recording": true}

func TestRecordingsStreamedAtAnyConcurrency(t *testing.T) {
	t.Parallel()
	for _, concurrency := range []int{1, 4} {
		t.Run(fmt.Sprint("concurrency ", concurrency), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			evs := e.seed(300, 20)
			e.addSession("long-session", 3000, e.t0.Add(10*time.Second))
			e.addSession("late-session", 50, e.t0.Add(20*time.Second))
			e.teleport.SetRecordingAvailableAfter("late-session", 2)
			require.GreaterOrEqual(t, len(e.recordings), 5, "the seed has a few uploads of its own")
			p := run(t, nil, e.args("--exit-on-last-event", "--concurrency", fmt.Sprint(concurrency))...)
			require.Equal(t, 0, p.wait(t, 2*time.Minute))
			require.Zero(t, delivered(t, e.fluentd, evs, nil))
			require.Zero(t, e.sessionsDelivered(defaultSkip), "duplicates in a clean run")
		})
	}
}

func TestEmptySkipSessionTypesForwardsPrintEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addSession("printing", 40, e.t0.Add(time.Second))
	p := run(t, nil, e.args("--exit-on-last-event", "--skip-session-types", "")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, e.sessionsDelivered(nil))
	require.Len(t, e.fluentd.Records(sessionTag("printing")), 40)
}

func TestMissingRecordingIsGivenUpAndTheRestArrive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(100, 21)
	up := &apievents.SessionUpload{
		Metadata:        apievents.Metadata{ID: "upload-gone", Type: "session.upload", Code: "T2005I", Time: e.t0.Add(5 * time.Second)},
		SessionMetadata: apievents.SessionMetadata{SessionID: "gone"},
	}
	require.NoError(t, e.teleport.AddEvents(up))
	p := run(t, nil, e.args("--exit-on-last-event")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, delivered(t, e.fluentd, evs, nil))
	require.Zero(t, e.sessionsDelivered(defaultSkip))
	require.Contains(t, p.Output(), "session recording not found; giving up on it")
}

func TestKillNineMidRecordingLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(100, 22)
	for i := range 3 {
		e.addSession(fmt.Sprintf("big-%d", i), 4000, e.t0.Add(time.Duration(30+i)*time.Second))
	}
	e.fluentd.SetLatency(time.Millisecond) // stretch the run so kills land mid-recording
	rng := rand.New(rand.NewPCG(22, 22))
	const kills = 4
	for range kills {
		p := run(t, nil, e.args("--skip-session-types", "")...)
		time.Sleep(time.Duration(800+rng.IntN(1500)) * time.Millisecond)
		p.signal(9)
		p.wait(t, 10*time.Second)
	}
	e.fluentd.SetLatency(0)
	p := run(t, nil, e.args("--exit-on-last-event", "--skip-session-types", "")...)
	require.Equal(t, 0, p.wait(t, 2*time.Minute))
	require.LessOrEqual(t, delivered(t, e.fluentd, evs, nil), kills*window)
	dups := e.sessionsDelivered(nil)
	t.Logf("%d duplicate session events after %d kills", dups, kills)
	// Each kill resends at most what each player had in flight.
	require.LessOrEqual(t, dups, kills*5*16)
}
