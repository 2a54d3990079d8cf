package poller_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/inflight/inflighttest"
	"github.com/fdfwd/teleport-event-handler/actors/poller"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// fakeLog serves events by index; the cursor is the index of the first event
// of the next page, and a full page always has a next cursor (as Teleport).
type fakeLog struct {
	mu     sync.Mutex
	events []*auditlogpb.EventUnstructured
	calls  int
	limits []int // of each search, in order
}

func newFakeLog(n int, start time.Time, types ...string) *fakeLog {
	f := &fakeLog{}
	for i := range n {
		typ := "user.login"
		if len(types) > 0 {
			typ = types[i%len(types)]
		}
		f.add(fmt.Sprintf("ev-%05d", i), typ, start.Add(time.Duration(i)*time.Second))
	}
	return f
}

func (f *fakeLog) add(id, typ string, t time.Time) {
	f.mu.Lock()
	f.events = append(f.events, inflighttest.Event(id, typ, t))
	// In time order, as Teleport returns them: an event added late lands
	// before later ones.
	slices.SortStableFunc(f.events, func(a, b *auditlogpb.EventUnstructured) int { return a.Time.AsTime().Compare(b.Time.AsTime()) })
	f.mu.Unlock()
}

func (f *fakeLog) SearchUnstructuredEvents(_ context.Context, from, to time.Time, _ string, _ []string, limit int, _ types.EventOrder, key string) ([]*auditlogpb.EventUnstructured, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.limits = append(f.limits, limit)
	var inRange []*auditlogpb.EventUnstructured
	for _, e := range f.events {
		if t := e.Time.AsTime(); !t.Before(from) && t.Before(to) {
			inRange = append(inRange, e)
		}
	}
	i := 0
	if key != "" {
		i, _ = strconv.Atoi(key)
	}
	i = min(i, len(inRange))
	page := inRange[i:min(i+limit, len(inRange))]
	next := ""
	if len(page) == limit {
		next = strconv.Itoa(i + limit)
	}
	return page, next, nil
}

type run struct {
	store *persistence.Store
	pool  *inflighttest.Pool
	log   *fakeLog
	tap   *inflighttest.Tap // optional; wants session.upload
	deps  poller.Deps
}

// start runs a root with checkpoint, fake pool and poller until the poller
// reports CaughtUp (exit-on-last-event: finished is true) or timeout passes,
// then stops it.
func (r *run) start(t *testing.T, timeout time.Duration) (finished bool) {
	t.Helper()
	return r.startUntil(t, timeout, nil)
}

// startUntil is start that also stops once until returns true.
func (r *run) startUntil(t *testing.T, timeout time.Duration, until func() bool) (finished bool) {
	t.Helper()
	tree := inflighttest.Tree{Store: r.store, Pool: r.pool, Tap: r.tap, Name: poller.Name, DrainTimeout: 200 * time.Millisecond,
		Reader: func(ckpt, pool *actor.PID, taps []inflight.Tap) actor.Actor {
			d := r.deps
			d.Events, d.Store, d.Checkpoint, d.Pool, d.Taps = r.log, r.store, ckpt, pool, taps
			return poller.New(d)
		}}
	finished, err := tree.Run(t, timeout, until)
	require.NoError(t, err)
	return finished
}

func newRun(t *testing.T, log *fakeLog, start time.Time) *run {
	store := storetest.Open(t)
	return &run{store: store, log: log, pool: inflighttest.NewPool(), deps: poller.Deps{
		URL: "https://fluentd.test/test.log", StartTime: start, WindowSize: time.Hour, Timeout: 10 * time.Millisecond,
		Batch: 20, Window: 8, ExitOnLastEvent: true, Log: zerolog.Nop(),
	}}
}

func TestDeliversEveryEventOnceAcrossWindows(t *testing.T) {
	start := time.Now().Add(-5 * time.Hour).Truncate(time.Hour)
	// 5 hours of events, one every 72 seconds: several windows, many pages.
	log := &fakeLog{}
	for i := range 250 {
		log.add(fmt.Sprintf("ev-%05d", i), "user.login", start.Add(time.Duration(i)*72*time.Second))
	}
	r := newRun(t, log, start)
	require.True(t, r.start(t, 20*time.Second), "did not catch up")

	require.Len(t, r.pool.Got, 250)
	for id, n := range r.pool.Got {
		require.Equal(t, 1, n, id)
	}
	pos, ok, err := r.store.AuditPosition()
	require.NoError(t, err)
	require.True(t, ok)
	require.EqualValues(t, 250, pos.Acked)
	require.Equal(t, "ev-00249", pos.LastID)
}

// Without --batch, pages double while they come back with more to read, so
// that a backlog takes few round trips, and fall back to the first size at
// the live edge; a --batch given is kept.
func TestPagesGrowThroughABacklogAndShrinkAtTheLiveEdge(t *testing.T) {
	start := time.Now().Add(-3 * time.Hour)
	log := newFakeLog(5000, start)
	r := newRun(t, log, start)
	r.deps.WindowSize, r.deps.GrowTo, r.deps.Window = 24*time.Hour, 10000, 500
	r.deps.ExitOnLastEvent = false
	polled := func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return r.pool.Events() == 5000 && len(log.limits) > 12 // the backlog, then polls of the live edge
	}
	require.False(t, r.startUntil(t, 20*time.Second, polled))
	require.Equal(t, 5000, r.pool.Events())
	// 20+40+...+2560 is past 5000: eight pages, the last one short. Its
	// 2460 events are read again once, to anchor the cursor after them;
	// the page after that finds nothing new, and small pages poll on.
	require.Equal(t, []int{20, 40, 80, 160, 320, 640, 1280, 2560, 2460, 4920}, log.limits[:10])
	for _, limit := range log.limits[10:] {
		require.Equal(t, 20, limit, "the live edge reads small pages")
	}

	fixed := newFakeLog(500, start)
	r = newRun(t, fixed, start)
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Equal(t, 500, r.pool.Events())
	require.Equal(t, []int{20}, slices.Compact(slices.Clone(fixed.limits)), "--batch 20 kept")
	require.Greater(t, len(fixed.limits), 25)
}

// A poller that grows its pages resumes at an offset deep into a large page
// with one request that reaches past it, and the offset holds: nothing is
// sent twice that was confirmed.
func TestGrownPagesResumeAtTheirOffset(t *testing.T) {
	start := time.Now().Add(-3 * time.Hour)
	log := newFakeLog(3000, start)
	r := newRun(t, log, start)
	r.deps.WindowSize, r.deps.GrowTo, r.deps.Window = 24*time.Hour, 10000, 100
	r.pool.Answer = 1500 // the rest stay in flight, as in a crash
	r.deps.ExitOnLastEvent = false
	require.False(t, r.start(t, 3*time.Second))
	pos, ok, err := r.store.AuditPosition()
	require.NoError(t, err)
	require.True(t, ok)
	require.Positive(t, pos.Offset, "the checkpoint is inside a page")

	log.limits = nil
	resumed := inflighttest.NewPool()
	r.pool, r.deps.ExitOnLastEvent = resumed, true
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Equal(t, min(pos.Offset+20, 10000), log.limits[0], "one request past the offset")
	for i := range 3000 {
		id := fmt.Sprintf("ev-%05d", i)
		if i < int(pos.Acked) {
			require.Zero(t, resumed.Count(id), "%s was confirmed before the stop", id)
		} else {
			require.Equal(t, 1, resumed.Count(id), id)
		}
	}
}

func TestSkipsConfiguredTypesButCountsThem(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	r := newRun(t, newFakeLog(60, start, "user.login", "session.start", "exec"), start)
	r.deps.Filter = inflight.Filter{Skip: map[string]bool{"exec": true}}
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Len(t, r.pool.Got, 40)
	pos, _, err := r.store.AuditPosition()
	require.NoError(t, err)
	require.EqualValues(t, 60, pos.Acked)
}

func TestResumesAfterStopWithBoundedDuplicates(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	log := newFakeLog(300, start)
	r := newRun(t, log, start)
	r.pool.Answer = 137 // the rest stay in flight, as in a crash
	r.deps.ExitOnLastEvent = false
	require.False(t, r.start(t, 2*time.Second))
	first := r.pool.Got

	r.pool = inflighttest.NewPool()
	r.deps.ExitOnLastEvent = true
	require.True(t, r.start(t, 20*time.Second), "did not catch up")

	dups := 0
	for i := range 300 {
		id := fmt.Sprintf("ev-%05d", i)
		total := first[id] + r.pool.Got[id]
		require.GreaterOrEqual(t, total, 1, "event %s lost", id)
		dups += total - 1
	}
	require.LessOrEqual(t, dups, r.deps.Window, "duplicates beyond the in-flight window")
}

func TestPicksUpEventsAppendedToTheLiveWindow(t *testing.T) {
	start := time.Now().Add(-time.Minute)
	log := newFakeLog(15, start) // less than a page
	r := newRun(t, log, start)
	r.deps.ExitOnLastEvent = false
	clock := clockwork.NewFakeClockAt(time.Now())
	r.deps.Clock = clock
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Caught up: the poller waits --timeout before reading again.
		if clock.BlockUntilContext(ctx, 1) != nil {
			return
		}
		for i := 15; i < 50; i++ {
			log.add(fmt.Sprintf("ev-%05d", i), "exec", start.Add(time.Duration(i)*time.Second))
		}
		clock.Advance(r.deps.Timeout)
	}()
	require.False(t, r.startUntil(t, 10*time.Second, func() bool { return r.pool.Count("ev-00049") == 1 }))
	require.Len(t, r.pool.Got, 50)
	for id, n := range r.pool.Got {
		require.Equal(t, 1, n, id)
	}
}

func TestTapsSeeTheirEventsEvenSkippedAndSurviveARestart(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	r := newRun(t, newFakeLog(90, start, "user.login", "session.upload", "exec"), start)
	r.deps.Filter = inflight.Filter{Skip: map[string]bool{"session.upload": true}}
	r.tap = &inflighttest.Tap{Seen: map[string]int{}, Crash: true}
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Len(t, r.tap.Seen, 30, "every session.upload observed")
	require.Len(t, r.pool.Got, 60, "skipped types are observed, not sent")
	pos, _, err := r.store.AuditPosition()
	require.NoError(t, err)
	require.EqualValues(t, 90, pos.Acked)
}

func TestCheckpointWaitsForTheTap(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	log := newFakeLog(10, start, "user.login")
	log.add("upload", "session.upload", start.Add(30*time.Second))
	log.add("after", "exec", start.Add(31*time.Second))
	r := newRun(t, log, start)
	r.tap = &inflighttest.Tap{Seen: map[string]int{}, Mute: "session.upload"}
	require.False(t, r.start(t, time.Second), "caught up although the tap never answered")
	require.Len(t, r.pool.Got, 12, "delivery goes on")
	pos, _, err := r.store.AuditPosition()
	require.NoError(t, err)
	require.Equal(t, "ev-00009", pos.LastID, "the checkpoint stops before the unanswered event")
}

// An event search shows late (after later ones), visible when a run of
// --exit-on-last-event starts, is delivered by that run: caught up means
// every event visible now is delivered, not only those the live cursor
// has not passed. (Found by the fault explorer, seed 3 of make test: a
// run exited 0 with such events undelivered; only a run --late-event-lag
// later would have read them.)
func TestExitOnLastEventDeliversLateEventsVisibleNow(t *testing.T) {
	start := time.Now().Add(-30 * time.Minute)
	log := newFakeLog(20, start)
	log.add("newest", "user.login", time.Now().Add(-time.Minute))
	r := newRun(t, log, start)
	r.deps.Lag = 5 * time.Minute
	r.deps.Clock = clockwork.NewRealClock()
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Equal(t, 1, r.pool.Count("newest"))

	// Shown late: stamped before the position, younger than the lag.
	log.add("late-1", "user.login", time.Now().Add(-2*time.Minute))
	r.pool = inflighttest.NewPool()
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Equal(t, 1, r.pool.Count("late-1"), "a late event visible at the start was not delivered")
	require.Zero(t, r.pool.Count("newest"), "the sweep sent an event delivered before")

	// The sweep does not move the trailing cursor past what is not lag
	// old: an event shown late after this run is still found by a later one.
	log.add("late-2", "user.login", time.Now().Add(-3*time.Minute))
	r.pool = inflighttest.NewPool()
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Equal(t, 1, r.pool.Count("late-2"))
	require.Zero(t, r.pool.Count("late-1"), "a late event sent twice")
}

// The trailing cursor keeps the events of the last --late-event-lag in the
// state file, 12 bytes each, so that the state file stays small at a busy
// cluster's rate (20,000 events in 2 minutes here: some 170 a second; keys
// of a time and an ID made a 4 MiB file of them). Found by the fault
// explorer: at 140 events a second such keys filled a 1 MiB state file in
// 27 s.
func TestSeenEventsKeepTheStateFileSmall(t *testing.T) {
	start := time.Now().Add(-2 * time.Minute)
	log := &fakeLog{}
	for i := range 20000 {
		log.add(fmt.Sprintf("%08x-5a1e-4c3b-9d2e-%012x", i*7919, i), "user.login", start.Add(time.Duration(i)*6*time.Millisecond))
	}
	r := newRun(t, log, start)
	r.deps.Lag = 10 * time.Minute // none falls out of it, however slow the run
	r.deps.Window = 256
	r.deps.Batch = 500
	r.deps.Clock = clockwork.NewRealClock()
	require.True(t, r.start(t, time.Minute), "did not catch up")
	require.Equal(t, 20000, len(r.pool.Got))
	seen, err := r.store.Seen()
	require.NoError(t, err)
	require.Equal(t, 20000, len(seen), "every event handed out within the lag is recorded as seen")
	fi, err := os.Stat(r.store.Path())
	require.NoError(t, err)
	require.Less(t, fi.Size(), int64(1<<20), "state file of %d bytes", fi.Size())
}
