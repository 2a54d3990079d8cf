package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// chunkDone tells the walker that a reader's chunk is settled and recorded
// as done.
type chunkDone struct {
	Ref    chunkRef
	Events uint64
}

// chunkParked tells the walker that reading a chunk kept failing: what was
// read of it is settled and its cursor saved, and it is recorded as parked,
// to be retried later.
type chunkParked struct {
	Ref      chunkRef
	Err      error
	Attempts int
}

// maxChunkFailures is how many times a chunk may fail, without progress in
// between, with an error that is not transient (teleport.Transient) before
// it is parked, so that one chunk Teleport cannot serve does not hold up its
// day and every day after it.
const maxChunkFailures = 10

// batch is what the stream goroutine hands the reader.
type batch struct {
	epoch  messages.Epoch
	events []*auditlogpb.ExportEventUnstructured
	// bodies are the events' bodies, made beside the stream (off the
	// actor, as the poller's fetcher does), nil for those not sent.
	bodies [][]byte
	eof    bool
	err    error
	at     time.Time
}

type reopenTick struct{}

// chunkPos is where a chunk resumes after an item.
type chunkPos struct {
	cursor string
	end    bool // the last item of the chunk, or of this attempt when parked
}

// reader streams one chunk to the pool, keeping its own watermark: the
// chunk's cursor is saved only over settled events.
type reader struct {
	Deps
	ref   chunkRef
	since time.Time
	after string
	log   zerolog.Logger
	epoch messages.Epoch

	readCursor string // after the last event read
	credit     chan struct{}
	stream     *supervisor.Task
	fails      int // failures in a row, for the backoff
	hardFails  int // of those, the ones that are not transient
	reopen     timer.Timer

	tr       inflight.Tracker[chunkPos]
	acked    uint64
	ackCur   string
	ending   bool   // the end marker is queued: the stream is over
	endSeq   uint64 // the end marker's seq once it is settled
	parkErr  error  // set when the chunk is being parked
	reported bool

	sub      *eventstream.Subscription
	draining bool
	drainTo  *actor.PID
}

func (r *reader) Receive(ctx actor.Context) {
	switch m := supervisor.Fault(timer.Message(ctx), ReaderKind).(type) {
	case *actor.Started:
		r.start(ctx)
	case *batch:
		if m.epoch == r.epoch {
			r.onBatch(ctx, m)
		}
	case *reopenTick:
		r.open(ctx)
	case *messages.Delivered, *messages.Answers, *messages.Observed:
		if r.tr.Answered(m) {
			r.pump(ctx)
		}
	case *messages.Saved:
		if m.Epoch == r.epoch && r.tr.Persisted(m.Seq) {
			r.pump(ctx)
		}
	case *messages.SaveFailed:
		if m.Epoch == r.epoch { // the walker stops with the cause
			panic(fmt.Errorf("export chunk %s: %w", r.ref, m.Err))
		}
	case *messages.TapStarted:
		r.tr.TapStarted(ctx, m.PID)
	case *messages.Drain:
		r.draining, r.drainTo = true, ctx.Sender()
		r.stopStream()
		r.pump(ctx)
	case *actor.Restarting, *actor.Stopping:
		if _, stops := m.(*actor.Stopping); stops {
			r.Metrics.Health.TeleportDone(ctx.Self().Id) // a chunk done or parked
		}
		r.stopStream()
		if r.sub != nil {
			ctx.ActorSystem().EventStream.Unsubscribe(r.sub)
			r.sub = nil
		}
	}
}

func (r *reader) start(ctx actor.Context) {
	r.epoch = messages.NewEpoch()
	r.log = r.Log.With().Str("actor", ReaderKind).Str("day", r.ref.DayName()).Str("chunk", r.ref.Chunk).Logger()
	r.reopen = timer.Timer{Clock: r.Clock}
	st, _, err := r.Store.ExportChunk(r.ref)
	if err != nil {
		panic(fmt.Errorf("load chunk %s: %w", r.ref, err))
	}
	r.readCursor, r.ackCur, r.acked = st.Cursor, st.Cursor, st.Acked
	r.tr = inflight.Tracker[chunkPos]{URL: r.URL, Stream: metrics.Audit, Pool: r.Pool, Taps: r.Taps,
		Filter: r.Filter, Metrics: r.Metrics, Encode: r.Encode, Window: r.Window}
	r.tr.Reset(r.epoch)
	self, root := ctx.Self(), ctx.ActorSystem().Root
	r.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*messages.TapStarted); ok {
			root.Send(self, evt)
		}
	})
	r.open(ctx)
}

// open starts streaming the chunk after readCursor. The goroutine hands
// over one batch at a time and waits for credit before reading more.
func (r *reader) open(ctx actor.Context) {
	if r.stream != nil || r.draining || r.ending {
		return
	}
	credit := make(chan struct{}, 1)
	r.credit = credit
	self, root, epoch := ctx.Self(), ctx.ActorSystem().Root, r.epoch
	req := &auditlogpb.ExportUnstructuredEventsRequest{Date: timestamppb.New(r.ref.Day), Chunk: r.ref.Chunk, Cursor: r.readCursor}
	size, src, filter, encode, dryRun := max(r.Batch, 1), r.Events, r.Filter, r.Encode.Or(), r.DryRun
	r.stream = supervisor.Go(context.Background(), func(ctx context.Context) {
		st := src.ExportUnstructuredEvents(ctx, req)
		defer st.Done()
		for {
			b := &batch{epoch: epoch}
			for len(b.events) < size && st.Next() {
				x := st.Item()
				var body []byte
				if ev := x.GetEvent(); ev != nil && filter.Sends(ev.Type) && !dryRun {
					body = encode(ev)
				}
				b.events, b.bodies = append(b.events, x), append(b.bodies, body)
			}
			if len(b.events) < size {
				if err := st.Done(); err != nil && !errors.Is(err, io.EOF) {
					b.err = err
				} else {
					b.eof = true
				}
			}
			b.at = time.Now()
			if ctx.Err() != nil {
				return // stopped by the reader
			}
			root.Send(self, b)
			if b.eof || b.err != nil {
				return
			}
			select {
			case <-credit:
			case <-ctx.Done():
				return
			}
		}
	})
}

// stopStream ends the stream and the wait to reopen it.
func (r *reader) stopStream() {
	r.stream.Stop()
	r.stream = nil
	r.reopen.Stop()
}

func (r *reader) onBatch(ctx actor.Context, b *batch) {
	if r.stream == nil {
		return // a stream stopped by Drain
	}
	for i, x := range b.events {
		ev := x.GetEvent()
		if ev == nil {
			continue
		}
		r.readCursor = x.Cursor
		if r.before(ev) {
			r.tr.Pass(ev, chunkPos{cursor: x.Cursor})
		} else {
			r.tr.Event(ev, chunkPos{cursor: x.Cursor}, b.at, b.bodies[i])
		}
	}
	r.Metrics.Health.TeleportCall(ctx.Self().Id, b.err)
	switch {
	case b.err != nil:
		r.stopStream()
		r.failed(ctx, b.err, len(b.events) > 0)
	case b.eof:
		r.stopStream()
		r.ending = true
		r.tr.Mark(chunkPos{cursor: r.readCursor, end: true})
	default:
		r.fails, r.hardFails = 0, 0
	}
	r.pump(ctx)
}

// failed handles a stream that broke: it is opened again from the cursor
// after a backoff, or the chunk is parked once it failed too often.
func (r *reader) failed(ctx actor.Context, err error, progress bool) {
	if progress {
		r.fails, r.hardFails = 0, 0 // it moved on since the last failure
	}
	r.fails++
	if !teleport.Transient(err) {
		r.hardFails++
	}
	r.Metrics.TeleportErrors.WithLabelValues("ExportUnstructuredEvents", metrics.ErrorKind(err)).Inc()
	if r.hardFails >= maxChunkFailures {
		r.log.Error().Err(err).Int("failures", r.hardFails).Str("cursor", r.readCursor).
			Msg("exporting a chunk keeps failing; parking it to retry later, from its cursor, while the other chunks go on")
		r.parkErr, r.ending = err, true
		r.tr.Mark(chunkPos{cursor: r.readCursor, end: true})
		return
	}
	delay := r.Retries.Delay(r.fails)
	r.log.Error().Err(err).Int("failures", r.fails).Dur("retry_in", delay).Msg("exporting a chunk failed; resuming")
	r.reopen.After(ctx, delay, &reopenTick{})
}

// before is true for events the export must not send: earlier than
// --start-time (or than the search path's position it was seeded from).
func (r *reader) before(ev *auditlogpb.EventUnstructured) bool {
	t := ev.GetTime().AsTime()
	return t.Before(r.since) || (r.after != "" && ev.Id == r.after && t.Equal(r.since))
}

func (r *reader) pump(ctx actor.Context) {
	if !r.draining {
		var dryRun func(*inflight.Item[chunkPos])
		if r.DryRun {
			dryRun = func(it *inflight.Item[chunkPos]) {
				r.log.Info().Str("event_id", it.Ev.Id).Str("event_type", it.Ev.Type).Msg("dry run: would send event")
			}
		}
		r.tr.HandOut(ctx, dryRun)
	}
	if r.tr.Buffered() == 0 && r.stream != nil && !r.draining {
		select {
		case r.credit <- struct{}{}:
		default:
		}
	}
	r.advance(ctx)
	settled := r.tr.Settled()
	if r.draining && settled && r.drainTo != nil {
		ctx.Send(r.drainTo, &messages.Drained{})
		r.drainTo = nil
	}
	if r.endSeq != 0 && settled && !r.reported {
		r.reported = true
		if r.parkErr != nil {
			ctx.Send(ctx.Parent(), &chunkParked{Ref: r.ref, Err: r.parkErr, Attempts: r.hardFails})
		} else {
			ctx.Send(ctx.Parent(), &chunkDone{Ref: r.ref, Events: r.acked})
		}
	}
}

// advance moves the chunk's watermark and saves its cursor; past the end
// marker the chunk is recorded as done (or parked) instead.
func (r *reader) advance(ctx actor.Context) {
	end := false
	last := r.tr.Advance(func(it *inflight.Item[chunkPos]) {
		if it.Ev != nil {
			r.acked++
		}
		if it.Pos.end {
			end, r.endSeq = true, it.Seq
		}
	})
	if last == nil {
		return
	}
	r.ackCur = last.Pos.cursor
	pos := persistence.ExportChunk{Cursor: r.ackCur, Acked: r.acked}
	var writes []kv.Write
	switch {
	case end && r.parkErr != nil:
		writes = persistence.ExportParkedWrites(r.ref, pos,
			persistence.ExportParked{Error: r.parkErr.Error(), Attempts: r.hardFails, At: r.Clock.Now()})
	case end:
		writes = persistence.ExportDoneWrites(r.ref, r.acked)
	default:
		writes = []kv.Write{persistence.ExportChunkWrite(r.ref, pos)}
	}
	ctx.Send(r.Checkpoint, &messages.Save{Key: "export/" + r.ref.String(), Epoch: r.epoch, Seq: last.Seq,
		Writes: writes, ReplyTo: ctx.Self()})
}
