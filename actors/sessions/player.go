package sessions

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/trace"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/eventjson"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/teleport"
)

// outcome is how a player ended.
type outcome int

const (
	finished outcome = iota // streamed completely and removed from the store
	gaveUp                  // not found for too long, or failing for good; removed
	retry                   // failed; the recording waits in the queue until rec.NotBefore
	drained                 // stopped for shutdown; resumed on the next start
)

func (o outcome) String() string {
	return [...]string{"finished", "gave up", "retry", "drained"}[o]
}

// playerDone tells the manager that a player is about to stop; rec is the
// recording as last stored.
type playerDone struct {
	epoch   uint64 // the manager's
	rec     persistence.Recording
	outcome outcome
}

// drain asks a player to stop streaming and settle what it sent.
type drain struct{}

// streamEvent and streamEnd come from the goroutine reading the stream.
type streamEvent struct {
	epoch uint64
	ev    *auditlogpb.EventUnstructured
	// body is the event's JSON, encoded by the stream's goroutine; nil
	// when it is not sent.
	body    []byte
	fetched time.Time
}

type streamEnd struct {
	epoch uint64
	err   error
}

// pitem is a session event sent or skipped and not yet checkpointed.
type pitem struct {
	seq   uint64
	index int64
	ev    *auditlogpb.EventUnstructured
	body  []byte // nil when not sent
	done  bool
	// fetched is when the event was read from the stream.
	fetched time.Time
}

// maxFailures is how many consecutive failures other than "not found" and
// connection problems a recording may have before it is given up.
const maxFailures = 10

// player streams one recording from its stored index and checkpoints the
// index over the contiguous run of confirmed events.
type player struct {
	Deps
	rec     persistence.Recording
	mgr     uint64 // the manager's epoch, for playerDone
	log     zerolog.Logger
	epoch   uint64
	url     string
	cancel  context.CancelFunc
	credits chan struct{} // one per event read and not yet checkpointed

	inflight  []*pitem
	nextSeq   uint64
	persisted uint64
	read      uint64 // events read in this incarnation, each holding a credit
	freed     uint64 // credits given back
	received  int64  // index after the last event read: where a new stream starts
	progress  bool   // an event was read in this attempt

	ending  bool // no more events will be read
	outcome outcome
	final   uint64 // seq of the final Save, once sent
}

func playerProps(d Deps, rec persistence.Recording, mgrEpoch uint64) *actor.Props {
	return d.Kit.Props("player", func() actor.Actor {
		return &player{Deps: d, rec: rec, mgr: mgrEpoch}
	})
}

func (p *player) Receive(ctx actor.Context) {
	faults.Inject("player", ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *streamEvent:
		if m.epoch == p.epoch {
			p.onEvent(ctx, m)
		}
	case *streamEnd:
		if m.epoch == p.epoch {
			p.onEnd(ctx, m.err)
		}
	case *messages.Delivered:
		if m.Epoch == p.epoch {
			if it := p.item(m.Seq); it != nil {
				it.done = true
				p.advance(ctx)
			}
		}
	case *messages.Saved:
		if m.Epoch == p.epoch && m.Seq > p.persisted {
			p.persisted = m.Seq
			p.release()
			p.maybeEnd(ctx)
		}
	case *drain:
		if !p.ending {
			p.end(ctx, drained, nil)
		}
	case *actor.Restarting, *actor.Stopping:
		p.stopStream()
	}
}

func (p *player) start(ctx actor.Context) {
	p.epoch = rand.Uint64()
	p.log = p.Log.With().Str("actor", "player").Str("session_id", p.rec.ID).Logger()
	p.url = URLFor(p.URL, p.rec.ID)
	// After a restart by the supervisor the store knows better than the
	// copy the manager gave.
	if rec, ok, err := p.Store.Recording(p.rec.ID); err != nil {
		panic(fmt.Errorf("load recording %s: %w", p.rec.ID, err))
	} else if ok {
		p.rec = rec
	}
	p.received, p.nextSeq = p.rec.Index, 1
	if p.rec.Index > 0 {
		p.log.Info().Int64("index", p.rec.Index).Msg("resuming session recording")
	} else {
		p.log.Debug().Msg("streaming session recording")
	}
	p.startStream(ctx)
}

// startStream reads the recording from p.received in a goroutine that
// forwards each event to the actor, holding a credit per event, so that at
// most Window events are read ahead of the checkpoint.
func (p *player) startStream(ctx actor.Context) {
	sctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.credits = make(chan struct{}, p.Window)
	self, root, epoch, credits := ctx.Self(), ctx.ActorSystem().Root, p.epoch, p.credits
	skip, dryRun := p.Skip, p.DryRun
	events, errs := p.Sessions.StreamUnstructuredSessionEvents(sctx, p.rec.ID, p.received)
	go func() {
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					root.Send(self, &streamEnd{epoch: epoch})
					return
				}
				fetched := time.Now()
				var body []byte
				if !skip[ev.Type] && !dryRun {
					body = eventjson.Event(ev)
				}
				select {
				case credits <- struct{}{}:
				case <-sctx.Done():
					return
				}
				root.Send(self, &streamEvent{epoch: epoch, ev: ev, body: body, fetched: fetched})
			case err := <-errs:
				root.Send(self, &streamEnd{epoch: epoch, err: err})
				return
			case <-sctx.Done():
				return
			}
		}
	}()
}

func (p *player) stopStream() {
	if p.cancel != nil {
		p.cancel()
		p.cancel = nil
	}
}

func (p *player) onEvent(ctx actor.Context, m *streamEvent) {
	ev := m.ev
	if p.ending {
		<-p.credits
		return
	}
	p.progress = true
	p.read++
	p.Metrics.EventsFetched.WithLabelValues(metrics.Session).Inc()
	it := &pitem{seq: p.nextSeq, index: ev.Index, ev: ev, fetched: m.fetched}
	p.nextSeq++
	p.received = ev.Index + 1
	p.inflight = append(p.inflight, it)
	switch {
	case p.Skip[ev.Type]:
		p.Metrics.EventsSkipped.WithLabelValues(metrics.Session, "type").Inc()
		it.done = true
	case p.DryRun:
		p.log.Info().Str("event_type", ev.Type).Int64("index", ev.Index).Msg("dry run: would send session event")
		it.done = true
	default:
		it.body = m.body
		if it.body == nil {
			it.body = eventjson.Event(ev)
		}
		ctx.Send(p.Pool, p.delivery(ctx, it))
	}
	p.advance(ctx)
}

func (p *player) delivery(ctx actor.Context, it *pitem) *messages.Delivery {
	return &messages.Delivery{Epoch: p.epoch, Seq: it.seq, URL: p.url, Body: it.body,
		EventID: it.ev.Id, Type: it.ev.Type, Stream: metrics.Session, ReplyTo: ctx.Self(), Fetched: it.fetched}
}

func (p *player) item(seq uint64) *pitem {
	if len(p.inflight) == 0 || seq < p.inflight[0].seq {
		return nil
	}
	if i := seq - p.inflight[0].seq; i < uint64(len(p.inflight)) {
		return p.inflight[i]
	}
	return nil
}

// advance checkpoints the index after the settled prefix.
func (p *player) advance(ctx actor.Context) {
	var last *pitem
	for len(p.inflight) > 0 && p.inflight[0].done {
		last = p.inflight[0]
		p.inflight[0] = nil
		p.inflight = p.inflight[1:]
	}
	if last == nil {
		return
	}
	p.rec.Index = last.index + 1
	p.save(ctx, last.seq, persistence.RecordingWrites(p.rec))
}

func (p *player) save(ctx actor.Context, seq uint64, writes []persistence.Write) {
	ctx.Send(p.Checkpoint, &messages.Save{Key: Key(p.rec.ID), Epoch: p.epoch, Seq: seq, Writes: writes, ReplyTo: ctx.Self()})
}

// release returns the credits of checkpointed events to the reader. Events
// take seqs 1, 2, ... in the order read, so those up to p.persisted are on
// disk.
func (p *player) release() {
	for ; p.freed < min(p.persisted, p.read); p.freed++ {
		<-p.credits
	}
}

func (p *player) onEnd(ctx actor.Context, err error) {
	if err == nil {
		p.end(ctx, finished, nil)
		return
	}
	p.Metrics.TeleportErrors.WithLabelValues("StreamUnstructuredSessionEvents", metrics.ErrorKind(err)).Inc()
	now := p.Now()
	if p.progress {
		p.rec.Failures = 1 // the recording moved on since its last failure
	} else {
		p.rec.Failures++
	}
	switch {
	case trace.IsNotFound(err) && p.rec.Index == 0 && !p.progress:
		// Uploads can lag their event; old events' recordings will not come.
		p.rec.NotFound++
		deadline := p.rec.UploadTime.Add(p.UploadWait)
		if p.rec.NotFound >= p.MinAttempts && now.After(deadline) {
			p.log.Error().Err(err).Int("attempts", p.rec.NotFound).Time("upload_time", p.rec.UploadTime).
				Msg("session recording not found; giving up on it")
			p.Metrics.SessionsGivenUp.WithLabelValues("not_found").Inc()
			p.end(ctx, gaveUp, err)
			return
		}
	case teleport.Transient(err):
		// Teleport is unreachable or busy: retry for as long as it takes.
	default:
		if p.rec.Failures >= maxFailures {
			p.log.Error().Err(err).Int("attempts", p.rec.Failures).Int64("index", p.received).
				Msg("streaming the session recording keeps failing; giving up on it")
			p.Metrics.SessionsGivenUp.WithLabelValues("failing").Inc()
			p.end(ctx, gaveUp, err)
			return
		}
	}
	p.rec.NotBefore = now.Add(retries.Delay(p.rec.Failures))
	p.log.Warn().Err(err).Int("attempt", p.rec.Failures).Time("retry_at", p.rec.NotBefore).
		Msg("streaming the session recording failed; retrying")
	p.end(ctx, retry, err)
}

// end stops reading and, once every event read is settled and
// checkpointed, writes the final state and reports to the manager.
func (p *player) end(ctx actor.Context, o outcome, _ error) {
	p.stopStream()
	p.ending, p.outcome = true, o
	if o == finished {
		p.rec.Failures, p.rec.NotBefore = 0, time.Time{}
	}
	p.maybeEnd(ctx)
}

func (p *player) maybeEnd(ctx actor.Context) {
	if !p.ending || len(p.inflight) > 0 {
		return
	}
	if p.final == 0 {
		p.final = p.nextSeq
		p.nextSeq++
		writes := persistence.RecordingWrites(p.rec)
		if p.outcome == finished || p.outcome == gaveUp {
			writes = persistence.RecordingDeletes(p.rec)
		}
		p.save(ctx, p.final, writes)
		return
	}
	if p.persisted < p.final {
		return
	}
	if p.outcome == finished {
		p.Metrics.SessionsFinished.Inc()
		p.log.Info().Int64("events", p.rec.Index).Msg("session recording sent")
	}
	ctx.Send(ctx.Parent(), &playerDone{epoch: p.mgr, rec: p.rec, outcome: p.outcome})
	ctx.Stop(ctx.Self())
}
