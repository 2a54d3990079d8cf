package export_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/internalutils/stream"
	"github.com/gravitational/trace"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/export"
	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/inflight/inflighttest"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// fakeAPI serves chunks: day -> chunk name -> events. Cursors are the
// position after an event. failAfter makes the next export stream of any
// chunk fail after that many events.
type fakeAPI struct {
	mu        sync.Mutex
	days      map[string]map[string][]*auditlogpb.EventUnstructured
	failAfter int
	lists     int
	// broken chunks serve their events up to index stopAt, then fail with
	// BadParameter, this many more times.
	broken map[string]int
	stopAt int
	reads  map[string]int
	// unavailable fails this many more export streams at once with a
	// connection problem.
	unavailable int
}

func newAPI() *fakeAPI {
	return &fakeAPI{days: map[string]map[string][]*auditlogpb.EventUnstructured{}, failAfter: -1,
		broken: map[string]int{}, reads: map[string]int{}}
}

// addChunk adds a chunk of n events of the given types, one a second from
// start (all on start's UTC day), with IDs prefix-i.
func (f *fakeAPI) addChunk(name, prefix string, n int, start time.Time, types ...string) []string {
	var ids []string
	var evs []*auditlogpb.EventUnstructured
	for i := range n {
		typ := "user.login"
		if len(types) > 0 {
			typ = types[i%len(types)]
		}
		id := fmt.Sprintf("%s-%04d", prefix, i)
		ids = append(ids, id)
		evs = append(evs, inflighttest.Event(id, typ, start.Add(time.Duration(i)*time.Second)))
	}
	day := start.UTC().Format(time.DateOnly)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.days[day] == nil {
		f.days[day] = map[string][]*auditlogpb.EventUnstructured{}
	}
	f.days[day][name] = evs
	return ids
}

func (f *fakeAPI) GetEventExportChunks(_ context.Context, req *auditlogpb.GetEventExportChunksRequest) stream.Stream[*auditlogpb.EventExportChunk] {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	var out []*auditlogpb.EventExportChunk
	for name := range f.days[req.Date.AsTime().UTC().Format(time.DateOnly)] {
		out = append(out, &auditlogpb.EventExportChunk{Chunk: name})
	}
	return stream.Slice(out)
}

func (f *fakeAPI) ExportUnstructuredEvents(_ context.Context, req *auditlogpb.ExportUnstructuredEventsRequest) stream.Stream[*auditlogpb.ExportEventUnstructured] {
	f.mu.Lock()
	defer f.mu.Unlock()
	evs, ok := f.days[req.Date.AsTime().UTC().Format(time.DateOnly)][req.Chunk]
	if !ok {
		return stream.Fail[*auditlogpb.ExportEventUnstructured](trace.NotFound("no chunk %s", req.Chunk))
	}
	from := 0
	if req.Cursor != "" {
		from, _ = strconv.Atoi(req.Cursor)
	}
	f.reads[req.Chunk]++
	if f.unavailable > 0 {
		f.unavailable--
		return stream.Fail[*auditlogpb.ExportEventUnstructured](trace.ConnectionProblem(nil, "injected: unavailable"))
	}
	var out []*auditlogpb.ExportEventUnstructured
	for i := from; i < len(evs); i++ {
		out = append(out, &auditlogpb.ExportEventUnstructured{Event: evs[i], Cursor: strconv.Itoa(i + 1)})
	}
	if f.broken[req.Chunk] > 0 {
		f.broken[req.Chunk]--
		items := out[:max(min(f.stopAt-from, len(out)), 0)]
		i := -1
		return stream.Func(func() (*auditlogpb.ExportEventUnstructured, error) {
			i++
			if i < len(items) {
				return items[i], nil
			}
			return nil, trace.BadParameter("injected: cannot read chunk %s at %d", req.Chunk, f.stopAt)
		})
	}
	if f.failAfter >= 0 && f.failAfter < len(out) {
		out = out[:f.failAfter]
		f.failAfter = -1
		items := out
		i := -1
		return stream.Func(func() (*auditlogpb.ExportEventUnstructured, error) {
			i++
			if i < len(items) {
				return items[i], nil
			}
			return nil, trace.ConnectionProblem(nil, "injected")
		})
	}
	return stream.Slice(out)
}

type run struct {
	store *persistence.Store
	api   *fakeAPI
	pool  *inflighttest.Pool
	tap   *inflighttest.Tap
	deps  export.Deps
}

func newRun(t *testing.T, api *fakeAPI, start time.Time) *run {
	store := storetest.Open(t)
	return &run{store: store, api: api, pool: inflighttest.NewPool(), deps: export.Deps{
		URL: "https://fluentd.test/test.log", StartTime: start, Timeout: 20 * time.Millisecond, Retries: backoff.Policy{Initial: time.Millisecond, Max: 50 * time.Millisecond},
		Concurrency: 3, Batch: 7, Window: 10, ExitOnLastEvent: true, Log: zerolog.Nop(),
	}}
}

// start runs the tree until the walker reports CaughtUp (finished) or the
// timeout passes, then stops it.
func (r *run) start(t *testing.T, timeout time.Duration) (finished bool) {
	t.Helper()
	finished, err := r.startUntil(t, timeout, nil)
	require.NoError(t, err)
	return finished
}

// startUntil runs the tree until the walker reports CaughtUp, until returns
// true or the timeout passes, and returns the run's error.
func (r *run) startUntil(t *testing.T, timeout time.Duration, until func() bool) (finished bool, err error) {
	t.Helper()
	tree := inflighttest.Tree{Store: r.store, Pool: r.pool, Tap: r.tap, Name: export.Name, DrainTimeout: 2 * time.Second, Kit: r.deps.Kit,
		Reader: func(ckpt, pool *actor.PID, taps []inflight.Tap) actor.Actor {
			d := r.deps
			d.Events, d.Store, d.Checkpoint, d.Pool, d.Taps = r.api, r.store, ckpt, pool, taps
			return export.New(d)
		}}
	return tree.Run(t, timeout, until)
}

func today() time.Time { return time.Now().UTC().Truncate(24 * time.Hour) }

// threeDays adds three chunks on each of the last three days and today.
func threeDays(api *fakeAPI) (ids []string, start time.Time) {
	start = today().AddDate(0, 0, -3)
	for d := range 4 {
		day := start.AddDate(0, 0, d)
		for c := range 3 {
			ids = append(ids, api.addChunk(fmt.Sprintf("c%d", c), fmt.Sprintf("d%d-c%d", d, c), 20+c*5, day.Add(time.Duration(c)*time.Minute), "user.login", "session.start", "exec")...)
		}
	}
	return ids, start
}

func TestExportsEveryEventOnceAcrossDaysAndChunks(t *testing.T) {
	api := newAPI()
	ids, start := threeDays(api)
	r := newRun(t, api, start)
	r.deps.Metrics = metrics.New()
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	// Caught up: the delivered position is today's last settled listing.
	acked := time.Unix(int64(testutil.ToFloat64(r.deps.Metrics.AckedEventTime)), 0)
	require.False(t, acked.Before(today()), "acked position %s", acked)
	require.False(t, acked.After(time.Now()))
	require.Len(t, r.pool.Got, len(ids))
	for _, id := range ids {
		require.Equal(t, 1, r.pool.Got[id], id)
	}
	// Every chunk is recorded done and no cursor is left.
	done, cursors := 0, 0
	require.NoError(t, r.store.Scan(persistence.BucketExport, "", 0, func(k string, _ []byte) bool {
		switch k[:5] {
		case "done/":
			done++
		case "chunk":
			cursors++
		}
		return true
	}))
	require.Equal(t, 12, done, "the completion records of the days out of the polling window (but one) are pruned")
	require.Zero(t, cursors)

	// A second run sends nothing again.
	r.pool = inflighttest.NewPool()
	require.True(t, r.start(t, 20*time.Second))
	require.Empty(t, r.pool.Got)

	// Switching to search starts it at the day the export was walking.
	seed, ok, err := export.SearchSeed(r.store)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, seed.WindowStart.Before(today()), "not before the day walked")
	if time.Since(today()) > export.SeedMargin+time.Minute {
		require.True(t, seed.WindowStart.After(today()), "the export had caught up: after the day's start")
		// Within the margin after midnight UTC the seed is the day's
		// start, which is later than the margin asks.
		require.False(t, seed.WindowStart.After(time.Now().Add(-export.SeedMargin)))
	}
	require.EqualValues(t, len(ids), seed.Acked)
	require.NoError(t, r.store.Apply([]kv.Write{persistence.AuditPositionWrite(seed)}))
	_, ok, err = export.SearchSeed(r.store)
	require.NoError(t, err)
	require.False(t, ok, "a search position at or after the export's day is kept")
}

// A late chunk of an earlier day, half read (its cursor saved, neither
// done nor parked), once did not move the search start back: search began
// at the walker's day and the chunk's remaining events were never read.
func TestSearchSeedStartsAtTheEarliestChunkNotDone(t *testing.T) {
	r := newRun(t, newAPI(), today())
	day := today().AddDate(0, 0, -1)
	late := persistence.ChunkRef{Day: today().AddDate(0, 0, -3), Chunk: "late"}
	parked := persistence.ChunkRef{Day: today().AddDate(0, 0, -2), Chunk: "parked"}
	writes := []kv.Write{
		persistence.ExportWalkerWrite(persistence.ExportWalker{Day: day, Since: today().AddDate(0, 0, -10)}),
		persistence.ExportChunkWrite(late, persistence.ExportChunk{Cursor: "c", Acked: 5}),
	}
	writes = append(writes, persistence.ExportParkedWrites(parked, persistence.ExportChunk{Cursor: "p"}, persistence.ExportParked{Error: "boom"})...)
	require.NoError(t, r.store.Apply(writes))
	seed, ok, err := export.SearchSeed(r.store)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, late.Day, seed.WindowStart, "search starts at the half-read chunk's day")

	// Once that chunk is done, the parked one's day is the earliest.
	require.NoError(t, r.store.Apply(persistence.ExportDoneWrites(late, 9)))
	seed, _, err = export.SearchSeed(r.store)
	require.NoError(t, err)
	require.Equal(t, parked.Day, seed.WindowStart)
}

func TestSearchSeedWithoutExportState(t *testing.T) {
	r := newRun(t, newAPI(), today())
	_, ok, err := export.SearchSeed(r.store)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestStartTimeToTheSecondAndTypeFilters(t *testing.T) {
	api := newAPI()
	day := today().AddDate(0, 0, -1)
	api.addChunk("a", "a", 60, day.Add(10*time.Hour), "user.login", "session.start", "exec")
	// An earlier day is not read at all.
	api.addChunk("old", "old", 10, day.AddDate(0, 0, -1))
	r := newRun(t, api, day.Add(10*time.Hour+30*time.Second)) // skips a-0000..a-0029
	r.deps.Filter = inflight.Filter{Only: map[string]bool{"user.login": true, "exec": true}, Skip: map[string]bool{"exec": true}}
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	want := map[string]int{}
	for i := 30; i < 60; i++ {
		if i%3 == 0 {
			want[fmt.Sprintf("a-%04d", i)] = 1
		}
	}
	require.Equal(t, want, r.pool.Got)
}

func TestResumesAfterStopWithBoundedDuplicates(t *testing.T) {
	api := newAPI()
	ids, start := threeDays(api)
	r := newRun(t, api, start)
	r.pool.Answer = 137
	r.deps.ExitOnLastEvent = false
	require.False(t, r.start(t, 1500*time.Millisecond))
	first := r.pool.Got

	r.pool = inflighttest.NewPool()
	r.deps.ExitOnLastEvent = true
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	dups := 0
	for _, id := range ids {
		total := first[id] + r.pool.Got[id]
		require.GreaterOrEqual(t, total, 1, "event %s lost", id)
		dups += total - 1
	}
	require.LessOrEqual(t, dups, r.deps.Concurrency*(r.deps.Window+r.deps.Batch), "duplicates beyond the in-flight windows")
}

func TestLateChunkOfAPastDayIsRead(t *testing.T) {
	api := newAPI()
	ids, start := threeDays(api)
	r := newRun(t, api, start)
	r.deps.ExitOnLastEvent = false
	clock := clockwork.NewFakeClockAt(time.Now())
	r.deps.Clock = clock
	var last atomic.Pointer[string] // the late chunk's last event
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Caught up: the walker waits --timeout before listing again.
		if clock.BlockUntilContext(ctx, 1) != nil {
			return
		}
		late := api.addChunk("late", "late", 15, today().AddDate(0, 0, -1).Add(time.Hour))
		last.Store(&late[len(late)-1])
		clock.Advance(r.deps.Timeout)
	}()
	finished, err := r.startUntil(t, 10*time.Second, func() bool { id := last.Load(); return id != nil && r.pool.Count(*id) == 1 })
	require.NoError(t, err)
	require.False(t, finished)
	require.Len(t, r.pool.Got, len(ids)+15)
	for id, n := range r.pool.Got {
		require.Equal(t, 1, n, id)
	}
}

func TestStreamFailureResumesFromTheLastCursorRead(t *testing.T) {
	api := newAPI()
	start := today().AddDate(0, 0, -1)
	ids := api.addChunk("a", "a", 50, start.Add(time.Hour))
	api.failAfter = 12
	r := newRun(t, api, start)
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Equal(t, -1, api.failAfter, "the failure was injected")
	require.Len(t, r.pool.Got, len(ids))
	for id, n := range r.pool.Got {
		require.Equal(t, 1, n, id)
	}
}

func TestTapsSeeSkippedEvents(t *testing.T) {
	api := newAPI()
	start := today().AddDate(0, 0, -1)
	api.addChunk("a", "a", 30, start.Add(time.Hour), "user.login", "session.upload")
	r := newRun(t, api, start)
	r.deps.Filter = inflight.Filter{Skip: map[string]bool{"session.upload": true}}
	r.tap = inflighttest.NewTap()
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Len(t, r.pool.Got, 15)
	require.Len(t, r.tap.Seen, 15)
}

func TestSeededFromTheSearchPathNeverResendsADay(t *testing.T) {
	api := newAPI()
	start := today().AddDate(0, 0, -2)
	api.addChunk("a", "a", 40, start.Add(time.Hour))
	api.addChunk("b", "b", 40, start.AddDate(0, 0, 1).Add(time.Hour))
	r := newRun(t, api, start)
	// The search path had acknowledged up to b-0009.
	require.NoError(t, r.store.Apply([]kv.Write{persistence.AuditPositionWrite(persistence.AuditPosition{
		WindowStart: start.AddDate(0, 0, 1), LastID: "b-0009", LastTime: start.AddDate(0, 0, 1).Add(time.Hour + 9*time.Second), Acked: 50,
	})}))
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	want := map[string]int{}
	for i := 10; i < 40; i++ {
		want[fmt.Sprintf("b-%04d", i)] = 1
	}
	require.Equal(t, want, r.pool.Got)
	// The search path's state is left as it was.
	pos, ok, err := r.store.AuditPosition()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "b-0009", pos.LastID)
}

// A chunk Teleport cannot serve is parked: the export goes on without it
// (other chunks and days), the run ends with an error naming it, and the
// next start reads it again from its cursor.
func TestFailingChunkIsParkedAndReadAgainAtTheNextStart(t *testing.T) {
	api := newAPI()
	start := today().AddDate(0, 0, -2)
	a := api.addChunk("a", "a", 30, start.Add(time.Hour))
	b := api.addChunk("b", "b", 30, start.Add(2*time.Hour))
	c := api.addChunk("c", "c", 30, start.AddDate(0, 0, 1).Add(time.Hour))
	api.broken["b"], api.stopAt = 1000, 5
	r := newRun(t, api, start)
	r.deps.Metrics = metrics.New()
	r.deps.ParkRetry = time.Hour
	finished, err := r.startUntil(t, 30*time.Second, nil)
	require.True(t, finished, "did not finish")
	require.ErrorContains(t, err, "1 chunk(s) could not be read and are parked")
	require.ErrorContains(t, err, dayName(start)+"/b")
	require.Equal(t, 10, api.reads["b"], "parked after 10 failures in a row")
	for _, id := range append(a, c...) {
		require.Equal(t, 1, r.pool.Got[id], id)
	}
	for i, id := range b {
		require.Equal(t, map[bool]int{true: 1, false: 0}[i < 5], r.pool.Got[id], id)
	}
	require.EqualValues(t, 1, testutil.ToFloat64(r.deps.Metrics.ExportChunksParked))
	// The walker moved on past the parked chunk's day, but search would
	// start at that day, and the delivered position is the day walked.
	seed, ok, err := export.SearchSeed(r.store)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, start, seed.WindowStart, "search seeded past a parked chunk")
	require.EqualValues(t, today().Unix(), testutil.ToFloat64(r.deps.Metrics.AckedEventTime))

	// Still broken at the next start: read again (10 more times), parked
	// again, and nothing counts as settled past it meanwhile.
	r.deps.Metrics = metrics.New()
	finished, err = r.startUntil(t, 30*time.Second, nil)
	require.True(t, finished, "did not finish")
	require.ErrorContains(t, err, dayName(start)+"/b")
	require.Equal(t, 20, api.reads["b"])
	require.Len(t, r.pool.Got, 65)
	for id, n := range r.pool.Got {
		require.Equal(t, 1, n, "%s sent again", id)
	}
	require.EqualValues(t, today().Unix(), testutil.ToFloat64(r.deps.Metrics.AckedEventTime))
	seed, _, err = export.SearchSeed(r.store)
	require.NoError(t, err)
	require.Equal(t, start, seed.WindowStart)

	// Teleport serves it again: the next start reads it from its cursor.
	delete(api.broken, "b")
	r.pool = inflighttest.NewPool()
	r.deps.Metrics = metrics.New()
	require.True(t, r.start(t, 20*time.Second))
	want := map[string]int{}
	for _, id := range b[5:] {
		want[id] = 1
	}
	require.Equal(t, want, r.pool.Got)
	require.Zero(t, testutil.ToFloat64(r.deps.Metrics.ExportChunksParked))
	require.NoError(t, r.store.Scan(persistence.BucketExport, "", 0, func(k string, _ []byte) bool {
		require.NotContains(t, k, "parked/")
		return true
	}))
}

// While the daemon runs, a parked chunk is read again every ParkRetry.
func TestParkedChunkIsRetriedWhileRunning(t *testing.T) {
	api := newAPI()
	start := today().AddDate(0, 0, -1)
	a := api.addChunk("a", "a", 30, start.Add(time.Hour))
	b := api.addChunk("b", "b", 30, start.Add(2*time.Hour))
	api.broken["b"], api.stopAt = 12, 5 // parked once, then 2 more failures
	r := newRun(t, api, start)
	r.deps.Metrics = metrics.New()
	r.deps.ExitOnLastEvent = false
	r.deps.ParkRetry = 50 * time.Millisecond
	all := func() bool {
		for _, id := range append(a, b...) {
			if r.pool.Count(id) == 0 {
				return false
			}
		}
		return testutil.ToFloat64(r.deps.Metrics.ExportChunksParked) == 0
	}
	_, err := r.startUntil(t, 30*time.Second, all)
	require.NoError(t, err)
	require.True(t, all(), "the parked chunk was not read again")
	require.Equal(t, 13, api.reads["b"])
	for _, id := range append(a, b...) {
		require.Equal(t, 1, r.pool.Got[id], id)
	}
}

// Connection problems never park a chunk, nor count towards parking it.
func TestConnectionProblemsNeverParkAChunk(t *testing.T) {
	api := newAPI()
	start := today().AddDate(0, 0, -1)
	ids := api.addChunk("a", "a", 30, start.Add(time.Hour))
	api.unavailable = 12
	api.broken["a"] = 3 // after the 12: 3 other failures, 15 in a row
	r := newRun(t, api, start)
	r.deps.Metrics = metrics.New()
	require.True(t, r.start(t, 20*time.Second), "did not catch up")
	require.Zero(t, api.unavailable)
	require.Len(t, r.pool.Got, len(ids))
	require.Zero(t, testutil.ToFloat64(r.deps.Metrics.ExportChunksParked))
}

func dayName(d time.Time) string { return d.UTC().Format(time.DateOnly) }

// Readers are spawned under the name of their kind: restarting them, however
// often, adds no value to the kind label of the metrics.
func TestReaderRestartsKeepTheKindLabelBounded(t *testing.T) {
	t.Cleanup(faults.Reset)
	api := newAPI()
	ids, start := threeDays(api)
	r := newRun(t, api, start)
	m := metrics.New()
	r.deps.Metrics = m
	strategy := supervisor.New(supervisor.Policy{InitialDelay: time.Millisecond, Budget: 100}, zerolog.Nop())
	strategy.Observe(func(d supervisor.Decision) { m.CountDecision(d.Kind, d.GaveUp, d.Cause) })
	r.deps.Kit = supervisor.Kit{Strategy: strategy, Metrics: m}
	faults.Arm(export.ReaderKind, 6)
	require.True(t, r.start(t, 30*time.Second), "did not catch up")
	require.Equal(t, 6, faults.Injected(export.ReaderKind))
	require.Equal(t, []string{export.ReaderKind}, labelValues(t, m, "teleport_event_handler_actor_restarts_total", "kind"))
	require.EqualValues(t, 6, testutil.ToFloat64(m.ActorRestarts.WithLabelValues(export.ReaderKind, "panic")))
	require.ElementsMatch(t, []string{export.Name, export.ReaderKind}, labelValues(t, m, "teleport_event_handler_actors", "kind"))
	for _, id := range ids {
		require.GreaterOrEqual(t, r.pool.Got[id], 1, id)
	}
}

// labelValues lists the values of label over the series of a metric.
func labelValues(t *testing.T, m *metrics.Metrics, name, label string) []string {
	t.Helper()
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	var out []string
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == label {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}

// The state file does not grow with the days walked: the completion
// records of a day are removed once it is out of the polling window.
func TestAYearOfDaysKeepsTheStateFileSmall(t *testing.T) {
	api := newAPI()
	const days, chunks = 365, 4
	start := today().AddDate(0, 0, -(days - 1))
	n := 0
	for d := range days {
		for c := range chunks {
			api.addChunk(fmt.Sprintf("chunk-%d", c), fmt.Sprintf("d%03d-c%d", d, c), 1, start.AddDate(0, 0, d).Add(time.Duration(c)*time.Minute), "exec")
			n++
		}
	}
	r := newRun(t, api, start)
	r.deps.Concurrency = chunks
	require.True(t, r.start(t, 2*time.Minute), "did not catch up")
	require.Len(t, r.pool.Got, n)
	done := 0
	require.NoError(t, r.store.Scan(persistence.BucketExport, "", 0, func(k string, _ []byte) bool {
		if strings.HasPrefix(k, "done/") {
			done++
		}
		return true
	}))
	info, err := os.Stat(r.store.Path())
	require.NoError(t, err)
	t.Logf("%d completion records and a state file of %d bytes after %d days of %d chunks", done, info.Size(), days, chunks)
	require.Equal(t, 4*chunks, done, "completion records beyond the three days polled and the one before")
	// bbolt grows its file in steps and keeps freed pages: the bound is a
	// few of its pages, whatever the number of days walked (measured: 32 KiB
	// pruned, 256 KiB and 1,460 records unpruned).
	require.LessOrEqual(t, info.Size(), int64(64<<10), "state file of %d bytes after a year of days", info.Size())
}
