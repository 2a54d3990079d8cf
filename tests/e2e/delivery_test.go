package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// window is the daemon's in-flight window with default flags: at most this
// many events are handed out and not yet checkpointed, so a crash resends at
// most this many (daemon.MinWindow, more than 4 x --fluentd-max-connections
// = 40 with the defaults).
const window = 256

func TestCleanRunDeliversEveryEventExactlyOnce(t *testing.T) {
	e, evs := seededEnv(t, 1000, 1)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--batch", "50")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "duplicates in a clean run")
	require.Equal(t, len(evs), e.Audit())

	// A second run finds nothing new and sends nothing again.
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--batch", "50")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Equal(t, len(evs), e.Audit())
}

func TestTypeFiltersApply(t *testing.T) {
	e, evs := seededEnv(t, 400, 2)
	skipped := map[string]bool{}
	for _, ev := range evs {
		if ev.GetType() == "user.login" {
			skipped[ev.GetID()] = true
		}
	}
	require.NotEmpty(t, skipped)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--skip-event-types", "user.login")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, skipped))
}

func TestKillNineAtRandomMomentsLosesNothing(t *testing.T) {
	e, evs := seededEnv(t, 3000, 3)
	e.Fluentd.SetLatency(2 * time.Millisecond) // stretch the run so kills land mid-stream
	kills := killAtRandom(t, e, []string{"--exit-on-last-event"}, 6, 200, 600)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute))
	dups := harness.Delivered(t, e.Fluentd, evs, nil)
	t.Logf("%d kills, %d duplicates (bound %d)", kills, dups, kills*window)
	require.LessOrEqual(t, dups, kills*window)
}

func TestPermanentRejectIsDeadLetteredAndTheRestArrive(t *testing.T) {
	e, evs := seededEnv(t, 300, 4)
	bad := evs[123].GetID()
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == bad })
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	// Caught up, but not everything delivered: status 3, not 0 (and not a
	// crash's 1), naming the file and counting each outcome.
	require.Equal(t, 3, p.Wait(t, time.Minute), p.Output())
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, map[string]bool{bad: true}))
	require.Contains(t, p.Output(), "1 event(s) were dead-lettered in this run: see "+deadLetterPath(e))
	require.Regexp(t, `delivered[^0-9]*\d+.*dead_lettered[^0-9]*1`, p.Output())

	letters := deadLetters(t, e)
	require.Len(t, letters, 1)
	require.Equal(t, bad, letters[0].EventID)
	require.Equal(t, 400, letters[0].Status)
	var body map[string]any
	require.NoError(t, json.Unmarshal(letters[0].Event, &body))
	require.Equal(t, bad, body["uid"])
	require.Contains(t, p.Output(), "dead-letter")
}

// With --fluentd-batch the events go as JSON arrays, each exactly once, and
// a rejected event is found and dead-lettered alone.
func TestFluentdBatchSendsArraysAndIsolatesARejectedEvent(t *testing.T) {
	e, evs := seededEnv(t, 1000, 8)
	e.AddSession("batched", 400, e.T0.Add(10*time.Second))
	bad := evs[321].GetID()
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == bad })
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--batch", "100", "--fluentd-batch", "25", "--skip-session-types", "")...)
	require.Equal(t, 3, p.Wait(t, 2*time.Minute), "one event dead-lettered")
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, map[string]bool{bad: true}), "duplicates in a clean run")
	require.Zero(t, e.SessionsDelivered(nil), "duplicates in a clean run")
	require.Len(t, e.Fluentd.Records(harness.SessionTag("batched")), 400)

	records := e.Fluentd.Count()
	// Arrays: far fewer requests than records, even with the rejected
	// batch sent again one event at a time.
	require.Less(t, e.Fluentd.Requests(), records/5, "requests for %d records", records)
	require.Equal(t, 2, e.Fluentd.Statuses()[400], "the bad event's batch, then the bad event alone: %v", e.Fluentd.Statuses())

	var ids []string
	for _, l := range deadLetters(t, e) {
		ids = append(ids, l.EventID)
	}
	require.Equal(t, []string{bad}, ids)
}

func TestRetriesTransientFailures(t *testing.T) {
	e, evs := seededEnv(t, 500, 5)
	e.Fluentd.FailFirst(30, 503)
	e.Fluentd.SetRandomFailure(0.1, 500, 5)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "a retried event that failed was not stored, so no duplicates")
}

func TestRidesOutAThirtySecondFluentdOutage(t *testing.T) {
	e, evs := seededEnv(t, 200, 6)
	p := harness.Run(t, binary, nil, e.Args()...)
	harness.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.Audit() >= len(evs) })
	e.Fluentd.Down(30 * time.Second)
	// Events that happen during the outage.
	more := teleportGenerate(200, time.Now(), 7)
	require.NoError(t, e.Teleport.AddEvents(more...))
	time.Sleep(31 * time.Second)
	// Retries back off to at most 10 s, so delivery resumes soon after.
	harness.WaitFor(t, 30*time.Second, "events after the outage", func() bool { return e.Audit() >= len(evs)+len(more) })
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 20*time.Second))
	require.Zero(t, harness.Delivered(t, e.Fluentd, append(evs, more...), nil))
	require.Contains(t, p.Output(), "retrying")
}

func TestSIGTERMStopsCleanlyAndResumesWithoutDuplicates(t *testing.T) {
	e, evs := seededEnv(t, 2000, 8)
	e.Fluentd.SetLatency(3 * time.Millisecond)
	p := harness.Run(t, binary, nil, e.Args()...)
	harness.WaitFor(t, 30*time.Second, "some events", func() bool { return e.Audit() > 200 })
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 15*time.Second))
	require.Less(t, e.Audit(), len(evs), "stopped mid-stream")

	e.Fluentd.SetLatency(0)
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "a graceful stop checkpoints every confirmed event")
}

func TestPicksUpNewEventsWhileRunning(t *testing.T) {
	e := parallelEnv(t)
	first := e.Seed(50, 9)
	p := harness.Run(t, binary, nil, e.Args()...)
	harness.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.Audit() >= 50 })
	// Events that happen now, in the live window.
	now := time.Now()
	live := teleportGenerate(60, now, 9)
	require.NoError(t, e.Teleport.AddEvents(live...))
	harness.WaitFor(t, 30*time.Second, "the live events", func() bool { return e.Audit() >= 110 })
	p.Signal(syscall.SIGINT)
	require.Equal(t, 0, p.Wait(t, 15*time.Second))
	require.Zero(t, harness.Delivered(t, e.Fluentd, append(first, live...), nil))
}

func TestDryRunSendsNothingAndKeepsStateApart(t *testing.T) {
	e, evs := seededEnv(t, 100, 10)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--dry-run")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Zero(t, e.Fluentd.Requests())
	require.Contains(t, p.Output(), evs[0].GetID())
	_, err := os.Stat(persistence.Dir(e.Storage, e.Teleport.Addr()))
	require.True(t, os.IsNotExist(err), "dry run wrote to --storage")

	// The real run afterwards still sends everything.
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil))
}

// A receiver that rejects every event for a while (the first 30 requests;
// in_http without a
// <parse> section answers 400 to each) is not a stream of bad events: the
// daemon stops dead-lettering after a run of them, takes that run's letters
// back, holds everything, and once the receiver accepts again delivers
// every event once, leaving the dead-letter file empty and exiting 0.
func TestSystemicRejectionsAreHeldNotDeadLettered(t *testing.T) {
	e, evs := seededEnv(t, 500, 41)
	e.Fluentd.FailFirst(30, 400)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute), p.Output())
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil), "duplicates")
	raw, err := os.ReadFile(deadLetterPath(e))
	if !os.IsNotExist(err) {
		require.NoError(t, err)
		require.Empty(t, strings.TrimSpace(string(raw)), "letters of a systemic run stayed in the file")
	}
	require.Contains(t, p.Output(), "<parse>", "the likely cause is named")
	require.Regexp(t, `"dead_lettered":0`, p.Output())
}
