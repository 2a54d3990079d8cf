// Package export reads the audit log through Teleport's export API: a
// day-walker actor walks UTC days from the stored start, lists each day's
// chunks (GetEventExportChunks) and runs at most Concurrency chunk-reader
// actors, each streaming one chunk (ExportUnstructuredEvents) to the Fluentd
// pool from its persisted cursor.
//
// Delivery is as on the search path: a chunk's cursor moves only over a
// contiguous run of settled events (sent or dead-lettered by the pool, and
// observed by the taps that want them), so after a crash only the events in
// flight are sent again. Completed chunks are recorded per day. The day
// moves on once every chunk of it is done and the day is over; the day and
// the two before it are listed again every Timeout, for late chunks.
//
// A chunk Teleport keeps failing to serve (other than by being unreachable)
// is parked after maxChunkFailures attempts: recorded as such, left out of
// its day's completion so that the export goes on, and read again from its
// cursor every ParkRetry and at every start.
//
// Unlike upstream's exporter, --types and --skip-event-types filter here too,
// and --start-time is honoured to the second. The state (persistence's
// export bucket) is kept apart from the search path's; on a first start it
// is seeded from the search path's position, so switching modes never sends
// a day again.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/internalutils/stream"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Name is the day-walker's name under the root.
const Name = "export"

// ReaderKind is the kind of the chunk readers.
const ReaderKind = "export-reader"

// Exporter is the part of the Teleport API client the export path uses.
type Exporter interface {
	GetEventExportChunks(ctx context.Context, req *auditlogpb.GetEventExportChunksRequest) stream.Stream[*auditlogpb.EventExportChunk]
	ExportUnstructuredEvents(ctx context.Context, req *auditlogpb.ExportUnstructuredEventsRequest) stream.Stream[*auditlogpb.ExportEventUnstructured]
}

// Deps configure the export path.
type Deps struct {
	Events     Exporter
	Store      *persistence.Store
	Checkpoint *actor.PID
	Pool       *actor.PID // unused with DryRun
	URL        string
	// Encode makes the body of each event sent (nil: its JSON).
	Encode inflight.Encode

	StartTime   time.Time
	Timeout     time.Duration  // wait between polls once caught up
	ParkRetry   time.Duration  // wait before reading parked chunks again
	Retries     backoff.Policy // waits after failed calls in a row (DefaultRetries when zero)
	Concurrency int            // chunk readers at once
	Batch       int            // events per hand-over from a stream
	Window      int            // events handed out and not checkpointed, per reader
	Filter      inflight.Filter
	Taps        []inflight.Tap

	DryRun          bool
	ExitOnLastEvent bool
	Clock           clockwork.Clock
	Log             zerolog.Logger
	Metrics         *metrics.Metrics
	// Kit makes the readers' props.
	Kit supervisor.Kit
}

type chunkRef = persistence.ChunkRef

type roundResult struct {
	epoch messages.Epoch
	at    time.Time // when the listing began
	days  []time.Time
	lists [][]string
	err   error
}

type roundTick struct{}

type parkTick struct{}

// DefaultRetries is the wait after failed calls to Teleport in a row: 100 ms
// doubling up to a minute.
var DefaultRetries = backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Minute}

// DefaultParkRetry is how long a parked chunk waits before it is read again.
const DefaultParkRetry = 10 * time.Minute

// Walker is the day-walker actor.
type Walker struct {
	Deps
	log   zerolog.Logger
	epoch messages.Epoch
	st    persistence.ExportWalker

	done    map[string]map[string]bool // day -> completed chunks
	queue   []chunkRef
	running map[string]*actor.PID // chunkRef.String -> reader
	pids    map[string]chunkRef   // reader PID id -> chunk
	parked  map[string]chunkRef   // chunkRef.String -> chunk waiting for parkWait
	retried map[string]bool       // chunkRef.String of parked chunks read again

	wait, parkWait timer.Timer
	listing        *supervisor.Task
	fails          int
	idleRound      bool // the last round found nothing to do
	stopping       bool
	saveSeq        uint64
	savedSeq       uint64
	// savingAt is the delivered position of the newest Save: every event
	// before it is delivered (the lag metric's reference).
	savingAt time.Time

	draining bool
	drainTo  *actor.PID
	drains   int
	finished bool
}

// New returns a walker.
func New(d Deps) *Walker {
	d.Clock = timer.Or(d.Clock)
	d.Concurrency = max(d.Concurrency, 1)
	if d.Batch <= 0 {
		d.Batch = 100
	}
	if d.Window <= 0 {
		d.Window = d.Batch
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	if d.Retries == (backoff.Policy{}) {
		d.Retries = DefaultRetries
	}
	if d.ParkRetry <= 0 {
		d.ParkRetry = DefaultParkRetry
	}
	return &Walker{Deps: d, wait: timer.Timer{Clock: d.Clock}, parkWait: timer.Timer{Clock: d.Clock}}
}

// Props returns the walker's props, made by d.Kit.
func Props(d Deps) *actor.Props {
	return d.Kit.Props(Name, func() actor.Actor { return New(d) })
}

// Receive implements actor.Actor.
func (w *Walker) Receive(ctx actor.Context) {
	switch m := supervisor.Fault(timer.Message(ctx), Name).(type) {
	case *actor.Started:
		w.start(ctx)
	case *roundTick:
		w.round(ctx)
	case *roundResult:
		if m.epoch == w.epoch {
			w.onRound(ctx, m)
		}
	case *chunkDone:
		w.onChunkDone(ctx, m)
	case *chunkParked:
		w.onChunkParked(ctx, m)
	case *parkTick:
		w.retryParked(ctx)
	case *messages.SaveFailed:
		if m.Epoch == w.epoch {
			panic(fmt.Errorf("export day-walker: %w", m.Err))
		}
	case *messages.Saved:
		if m.Epoch == w.epoch && m.Seq > w.savedSeq {
			w.savedSeq = m.Seq
			if m.Seq == w.saveSeq {
				w.Metrics.SetAcked(w.savingAt)
			}
			w.reportPending()
			w.maybeFinish(ctx)
		}
	case *actor.Terminated:
		w.onTerminated(m.Who)
	case *messages.Drained:
		w.drains--
		w.maybeFinish(ctx)
	case *messages.Drain:
		w.drain(ctx)
	case *actor.Restarting, *actor.Stopping:
		w.stopping = true
		w.stopWork()
	}
}

func (w *Walker) start(ctx actor.Context) {
	w.epoch = messages.NewEpoch()
	w.log = w.Log.With().Str("actor", Name).Logger()
	st, err := initialState(w.Store, w.StartTime)
	if err != nil {
		panic(fmt.Errorf("load export state: %w", err))
	}
	w.st = st
	w.done, w.running, w.pids = map[string]map[string]bool{}, map[string]*actor.PID{}, map[string]chunkRef{}
	w.parked, w.retried = map[string]chunkRef{}, map[string]bool{}
	w.log.Info().Str("day", persistence.DayName(st.Day)).Time("since", st.Since).Uint64("acked", st.Acked).Msg("export resumes")
	parked, err := w.Store.ExportParkedChunks()
	if err != nil {
		panic(fmt.Errorf("load parked export chunks: %w", err))
	}
	if len(parked) > 0 {
		// Read them again first: they may have come right since.
		w.log.Warn().Int("chunks", len(parked)).Msg("reading the export chunks parked by an earlier run again")
		w.queue = parked
		for _, ref := range parked {
			w.retried[ref.String()] = true
		}
	}
	w.Metrics.ExportChunksParked.Set(float64(len(parked)))
	w.save(ctx)
	w.round(ctx)
}

// stopWork ends the waits and the listing in progress.
func (w *Walker) stopWork() {
	w.wait.Stop()
	w.parkWait.Stop()
	w.listing.Stop()
	w.listing = nil
}

// drain stops walking and asks the readers to settle what they sent.
func (w *Walker) drain(ctx actor.Context) {
	w.draining, w.drainTo = true, ctx.Sender()
	w.stopWork()
	w.queue = nil
	for _, pid := range w.running {
		ctx.Request(pid, &messages.Drain{})
		w.drains++
	}
	w.maybeFinish(ctx)
}

// pollDays are the day being walked and the two before it (not before the
// start day).
func (w *Walker) pollDays() []time.Time {
	first := persistence.Day(w.st.Since)
	var days []time.Time
	for i := 2; i >= 0; i-- {
		if d := w.st.Day.AddDate(0, 0, -i); !d.Before(first) {
			days = append(days, d)
		}
	}
	return days
}

// round lists the chunks of the polled days, on a goroutine of its own.
func (w *Walker) round(ctx actor.Context) {
	if w.listing != nil || w.draining || w.finished || w.wait.Armed() {
		return
	}
	days := w.pollDays()
	self, root, epoch, src, now := ctx.Self(), ctx.ActorSystem().Root, w.epoch, w.Events, w.Clock.Now()
	w.listing = supervisor.Go(context.Background(), func(task context.Context) {
		lctx, cancel := context.WithTimeout(task, time.Minute)
		defer cancel()
		res := &roundResult{epoch: epoch, days: days, at: now}
		res.lists, res.err = listChunks(lctx, src, days)
		if task.Err() == nil { // else the walker stopped listing
			root.Send(self, res)
		}
	})
}

// listChunks lists the chunks of each day.
func listChunks(ctx context.Context, src Exporter, days []time.Time) ([][]string, error) {
	var lists [][]string
	for _, d := range days {
		st := src.GetEventExportChunks(ctx, &auditlogpb.GetEventExportChunksRequest{Date: timestamppb.New(d)})
		var names []string
		for st.Next() {
			names = append(names, st.Item().GetChunk())
		}
		if err := st.Done(); err != nil && !errors.Is(err, io.EOF) {
			return lists, err
		}
		lists = append(lists, names)
	}
	return lists, nil
}

func (w *Walker) onRound(ctx actor.Context, r *roundResult) {
	w.listing = nil
	w.Metrics.Health.TeleportCall(ctx.Self().Id, r.err)
	if w.draining {
		w.maybeFinish(ctx)
		return
	}
	if r.err != nil {
		w.Metrics.TeleportErrors.WithLabelValues("GetEventExportChunks", metrics.ErrorKind(r.err)).Inc()
		w.fails++
		delay := w.Retries.Delay(w.fails)
		w.log.Error().Err(r.err).Int("failures", w.fails).Dur("retry_in", delay).Msg("listing export chunks failed; retrying")
		w.wait.After(ctx, delay, &roundTick{})
		return
	}
	w.fails = 0
	found := w.enqueueNew(r)
	// Idle: nothing new, nothing running and nothing queued (such as the
	// chunks parked by an earlier run, queued at start).
	w.idleRound = found == 0 && len(w.running) == 0 && len(w.queue) == 0
	if w.idleRound && len(w.parked) == 0 && r.at.After(w.st.IdleAt) {
		// Every chunk listed up to r.at is settled: all events before it
		// are delivered (what search would resume from). Not while a
		// chunk is parked: its events are not.
		w.st.IdleAt = r.at
		w.save(ctx)
	}
	w.dispatch(ctx)
	w.next(ctx)
}

// enqueueNew queues the chunks of a listing that are neither done, parked,
// running nor queued, and returns how many.
func (w *Walker) enqueueNew(r *roundResult) int {
	found := 0
	for i, d := range r.days {
		done, err := w.doneOf(d)
		if err != nil {
			panic(err)
		}
		for _, c := range r.lists[i] {
			ref := chunkRef{Day: d, Chunk: c}
			_, parked := w.parked[ref.String()]
			if done[c] || parked || w.running[ref.String()] != nil || slices.Contains(w.queue, ref) {
				continue
			}
			w.queue = append(w.queue, ref)
			found++
		}
	}
	return found
}

// next decides what follows once nothing is queued or running: the next day
// when the current one is over, else a poll after Timeout.
func (w *Walker) next(ctx actor.Context) {
	w.reportPending()
	if len(w.queue) > 0 || len(w.running) > 0 || w.listing != nil || w.draining {
		return
	}
	if !w.idleRound {
		w.round(ctx) // list again: chunks done, anything new?
		return
	}
	if !w.st.Day.AddDate(0, 0, 1).After(w.Clock.Now()) {
		w.st.Day = w.st.Day.AddDate(0, 0, 1)
		w.save(ctx, w.pruneDone()...)
		w.round(ctx)
		return
	}
	if w.ExitOnLastEvent {
		w.maybeFinish(ctx)
		return
	}
	w.wait.After(ctx, w.Timeout, &roundTick{})
}

// reportPending tells the metrics from when events may be unconfirmed:
// none once the walk is at today with every chunk listed settled.
func (w *Walker) reportPending() {
	idle := w.idleRound && len(w.queue) == 0 && len(w.running) == 0 && w.listing == nil &&
		w.st.Day.AddDate(0, 0, 1).After(w.Clock.Now())
	if idle {
		w.Metrics.SetPending(time.Time{})
		return
	}
	w.Metrics.SetPending(w.deliveredUpTo())
}

func (w *Walker) doneOf(d time.Time) (map[string]bool, error) {
	if m, ok := w.done[persistence.DayName(d)]; ok {
		return m, nil
	}
	m, err := w.Store.ExportDoneChunks(d)
	if err != nil {
		return nil, fmt.Errorf("load completed chunks of %s: %w", persistence.DayName(d), err)
	}
	w.done[persistence.DayName(d)] = m
	return m, nil
}

// pruneDone forgets the completed chunks of the days out of the polling
// window, in memory, and returns the writes that remove from the state
// file those of the days before the window's first day but one, so that
// the file does not grow with the days walked.
func (w *Walker) pruneDone() []kv.Write {
	days := w.pollDays()
	keep := map[string]bool{}
	for _, d := range days {
		keep[persistence.DayName(d)] = true
	}
	for k := range w.done {
		if !keep[k] {
			delete(w.done, k)
		}
	}
	// One day more than the window is kept: a walker that restarts before
	// this save is on disk polls from the day before days[0] and must still
	// find that day's records.
	writes, err := w.Store.ExportPruneWrites(days[0].AddDate(0, 0, -1))
	if err != nil {
		panic(fmt.Errorf("list completed chunks to prune: %w", err))
	}
	return writes
}

// save checkpoints the walker's state, with extra writes in the same
// transaction.
func (w *Walker) save(ctx actor.Context, extra ...kv.Write) {
	w.saveSeq++
	w.savingAt = w.deliveredUpTo()
	ctx.Send(w.Checkpoint, &messages.Save{Key: "export/walker", Epoch: w.epoch, Seq: w.saveSeq,
		Writes: append([]kv.Write{persistence.ExportWalkerWrite(w.st)}, extra...), ReplyTo: ctx.Self()})
}

// deliveredUpTo is the time before which every event is delivered (or
// before the start), as far as the walker knows: the start time, the start
// of the day it walks (the days before are complete) or, later, when a
// listing last found every chunk settled. Parked chunks are left out: they
// have a gauge of their own.
func (w *Walker) deliveredUpTo() time.Time {
	t := w.st.Since
	for _, u := range []time.Time{w.st.Day, w.st.IdleAt} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

func (w *Walker) maybeFinish(ctx actor.Context) {
	if w.draining {
		if w.drains <= 0 && w.listing == nil && w.savedSeq == w.saveSeq && w.drainTo != nil {
			ctx.Send(w.drainTo, &messages.Drained{})
			w.drainTo = nil
		}
		return
	}
	if w.ExitOnLastEvent && !w.finished && w.idleRound && len(w.running) == 0 && len(w.queue) == 0 && w.listing == nil {
		w.finished = true
		w.parkWait.Stop()
		w.log.Info().Uint64("acked", w.st.Acked).Msg("caught up with the audit log")
		var err error
		if len(w.parked) > 0 {
			names := make([]string, 0, len(w.parked))
			for key := range w.parked {
				names = append(names, key)
			}
			slices.Sort(names)
			err = fmt.Errorf("export: %d chunk(s) could not be read and are parked, to be read again at the next start: %s",
				len(names), strings.Join(names, ", "))
		}
		ctx.Send(ctx.Parent(), &messages.CaughtUp{Name: Name, Events: w.st.Acked, Err: err})
		for _, tap := range w.Taps {
			ctx.Send(tap.PID, &messages.CaughtUp{Name: Name, Events: w.st.Acked})
		}
	}
}
