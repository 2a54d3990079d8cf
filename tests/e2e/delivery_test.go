package e2e

import (
	"bufio"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// window is the daemon's in-flight window with default flags: at most this
// many events are handed out and not yet checkpointed, so a crash resends at
// most this many (4 x --fluentd-max-connections, which defaults to
// 2 x --concurrency = 10).
const window = 40

func TestCleanRunDeliversEveryEventExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(1000, 1)
	p := run(t, nil, e.args("--exit-on-last-event", "--batch", "50")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, delivered(t, e.fluentd, evs, nil), "duplicates in a clean run")
	require.Equal(t, len(evs), e.audit())

	// A second run finds nothing new and sends nothing again.
	p = run(t, nil, e.args("--exit-on-last-event", "--batch", "50")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Equal(t, len(evs), e.audit())
}

func TestTypeFiltersApply(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(400, 2)
	skipped := map[string]bool{}
	for _, ev := range evs {
		if ev.GetType() == "user.login" {
			skipped[ev.GetID()] = true
		}
	}
	require.NotEmpty(t, skipped)
	p := run(t, nil, e.args("--exit-on-last-event", "--skip-event-types", "user.login")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, delivered(t, e.fluentd, evs, skipped))
}

func TestKillNineAtRandomMomentsLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(3000, 3)
	e.fluentd.SetLatency(2 * time.Millisecond) // stretch the run so kills land mid-stream
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	kills := 0
	for range 6 {
		p := run(t, nil, e.args("--exit-on-last-event")...)
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		select {
		case <-p.done:
			continue // finished before the kill
		default:
		}
		p.signal(syscall.SIGKILL)
		p.wait(t, 10*time.Second)
		kills++
	}
	p := run(t, nil, e.args("--exit-on-last-event")...)
	require.Equal(t, 0, p.wait(t, 2*time.Minute))
	dups := delivered(t, e.fluentd, evs, nil)
	t.Logf("%d kills, %d duplicates (bound %d)", kills, dups, kills*window)
	require.LessOrEqual(t, dups, kills*window)
}

func TestPermanentRejectIsDeadLetteredAndTheRestArrive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(300, 4)
	bad := evs[123].GetID()
	e.fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == bad })
	p := run(t, nil, e.args("--exit-on-last-event")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, delivered(t, e.fluentd, evs, map[string]bool{bad: true}))

	f, err := os.Open(filepath.Join(persistence.Dir(e.storage, e.teleport.Addr()), persistence.DeadLetterFile))
	require.NoError(t, err)
	defer f.Close()
	var letters []persistence.DeadLetter
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l persistence.DeadLetter
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		letters = append(letters, l)
	}
	require.Len(t, letters, 1)
	require.Equal(t, bad, letters[0].EventID)
	require.Equal(t, 400, letters[0].Status)
	var body map[string]any
	require.NoError(t, json.Unmarshal(letters[0].Event, &body))
	require.Equal(t, bad, body["uid"])
	require.Contains(t, p.Output(), "dead-letter")
}

func TestRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(500, 5)
	e.fluentd.FailFirst(30, 503)
	e.fluentd.SetRandomFailure(0.1, 500, 5)
	p := run(t, nil, e.args("--exit-on-last-event")...)
	require.Equal(t, 0, p.wait(t, 2*time.Minute))
	require.Zero(t, delivered(t, e.fluentd, evs, nil), "a retried event that failed was not stored, so no duplicates")
}

func TestRidesOutAThirtySecondFluentdOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(200, 6)
	p := run(t, nil, e.args()...)
	waitFor(t, 30*time.Second, "the first events", func() bool { return e.audit() >= len(evs) })
	e.fluentd.Down(30 * time.Second)
	// Events that happen during the outage.
	more := teleportGenerate(200, time.Now(), 7)
	require.NoError(t, e.teleport.AddEvents(more...))
	time.Sleep(31 * time.Second)
	// Retries back off to at most 10 s, so delivery resumes soon after.
	waitFor(t, 30*time.Second, "events after the outage", func() bool { return e.audit() >= len(evs)+len(more) })
	p.signal(syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t, 20*time.Second))
	require.Zero(t, delivered(t, e.fluentd, append(evs, more...), nil))
	require.Contains(t, p.Output(), "retrying")
}

func TestSIGTERMStopsCleanlyAndResumesWithoutDuplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(2000, 8)
	e.fluentd.SetLatency(3 * time.Millisecond)
	p := run(t, nil, e.args()...)
	waitFor(t, 30*time.Second, "some events", func() bool { return e.audit() > 200 })
	p.signal(syscall.SIGTERM)
	require.Equal(t, 0, p.wait(t, 15*time.Second))
	require.Less(t, e.audit(), len(evs), "stopped mid-stream")

	e.fluentd.SetLatency(0)
	p = run(t, nil, e.args("--exit-on-last-event")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, delivered(t, e.fluentd, evs, nil), "a graceful stop checkpoints every confirmed event")
}

func TestPicksUpNewEventsWhileRunning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.seed(50, 9)
	p := run(t, nil, e.args()...)
	waitFor(t, 30*time.Second, "the first events", func() bool { return e.audit() >= 50 })
	// Events that happen now, in the live window.
	now := time.Now()
	live := teleportGenerate(60, now, 9)
	require.NoError(t, e.teleport.AddEvents(live...))
	waitFor(t, 30*time.Second, "the live events", func() bool { return e.audit() >= 110 })
	p.signal(syscall.SIGINT)
	require.Equal(t, 0, p.wait(t, 15*time.Second))
	require.Zero(t, delivered(t, e.fluentd, append(first, live...), nil))
}

func TestDryRunSendsNothingAndKeepsStateApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(100, 10)
	p := run(t, nil, e.args("--exit-on-last-event", "--dry-run")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, e.fluentd.Requests())
	require.Contains(t, p.Output(), evs[0].GetID())
	_, err := os.Stat(persistence.Dir(e.storage, e.teleport.Addr()))
	require.True(t, os.IsNotExist(err), "dry run wrote to --storage")

	// The real run afterwards still sends everything.
	p = run(t, nil, e.args("--exit-on-last-event")...)
	require.Equal(t, 0, p.wait(t, time.Minute))
	require.Zero(t, delivered(t, e.fluentd, evs, nil))
}
