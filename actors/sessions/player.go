package sessions

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/trace"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// PlayerKind is the kind of the session players.
const PlayerKind = "player"

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

// playerDone tells the manager that a player is done, and may be stopped;
// rec is the recording as last stored.
type playerDone struct {
	epoch   messages.Epoch // the manager's
	pid     *actor.PID
	rec     persistence.Recording
	outcome outcome
}

// drain asks a player to stop streaming and settle what it sent.
type drain struct{}

// streamEvent and streamEnd come from the goroutine reading the stream.
type streamEvent struct {
	epoch messages.Epoch
	ev    *auditlogpb.EventUnstructured
	// body is the event's JSON, encoded by the stream's goroutine; nil
	// when it is not sent.
	body    []byte
	fetched time.Time
}

type streamEnd struct {
	epoch messages.Epoch
	err   error
}

// playerPos is where a recording resumes after an item: the index of its
// first event not yet confirmed. end marks the last item of the stream.
type playerPos struct {
	index int64
	end   bool
}

// PlayerFault is the fault kind (actors/faults) of the player of recording
// sid alone: the tests of a recording a player fails on every time.
func PlayerFault(sid string) string { return PlayerKind + "/" + sid }

// MaxCrashes is how many times a recording's player may die (fail on it
// until its restart budget is spent), counted in the state file across
// starts, before the recording is given up.
const MaxCrashes = 3

// maxFailures is how many consecutive failures other than "not found" and
// connection problems a recording may have before it is given up.
const maxFailures = 10

// player streams one recording from its stored index and checkpoints the
// index over the contiguous run of confirmed events (inflight.Tracker).
type player struct {
	Deps
	rec   persistence.Recording
	fault string         // PlayerFault of the recording
	mgr   messages.Epoch // the manager's epoch, for playerDone
	log   zerolog.Logger
	epoch messages.Epoch

	tr      inflight.Tracker[playerPos]
	stream  *supervisor.Task
	credits chan struct{} // one per event read and not yet checkpointed
	read    uint64        // events read in this incarnation, each holding a credit
	freed   uint64        // credits given back
	saved   uint64        // seq of the newest checkpoint on disk
	next    int64         // index after the last event read: where the stream is
	moved   bool          // an event was read in this attempt

	ending  bool // no more events will be read
	outcome outcome
	why     string // why it was given up: not_found or failing
	endSeq  uint64 // seq of the end marker, once its checkpoint is sent
}

func playerProps(d Deps, rec persistence.Recording, mgrEpoch messages.Epoch) *actor.Props {
	return d.Kit.Props(PlayerKind, func() actor.Actor {
		return &player{Deps: d, rec: rec, fault: PlayerFault(rec.ID), mgr: mgrEpoch}
	})
}

func (p *player) Receive(ctx actor.Context) {
	switch m := supervisor.Fault(ctx.Message(), PlayerKind, p.fault).(type) {
	case *actor.Started:
		p.start(ctx)
	case *streamEvent:
		if m.epoch == p.epoch {
			p.onEvent(ctx, m)
		}
	case *streamEnd:
		// Once ending (a drain), the stream's end changes nothing: what it
		// read after the drain was dropped, and is read again next time.
		if m.epoch == p.epoch && !p.ending {
			p.onEnd(ctx, m.err)
		}
	case *messages.Delivered, *messages.Answers:
		if p.tr.Answered(m) {
			p.pump(ctx)
		}
	case *messages.SaveFailed:
		if m.Epoch == p.epoch {
			// Stopped at once (Unrecoverable): the manager counts it as
			// a crash on the recording, and gives it up at MaxCrashes.
			panic(fmt.Errorf("session recording %s: %w", p.rec.ID, m.Err))
		}
	case *messages.Saved:
		if m.Epoch == p.epoch && p.tr.Persisted(m.Seq) {
			p.saved = m.Seq
			p.release()
			p.pump(ctx)
		}
	case *drain:
		if !p.ending {
			p.end(ctx, drained)
		}
	case *actor.Restarting, *actor.Stopping:
		p.stream.Stop()
		p.stream = nil
	}
}

func (p *player) start(ctx actor.Context) {
	p.epoch = messages.NewEpoch()
	p.log = p.Log.With().Str("actor", PlayerKind).Str("session_id", p.rec.ID).Logger()
	// After a restart by the supervisor the store knows better than the
	// copy the manager gave. The manager stores a recording before it
	// starts its player, so one that is gone was finished (or given up)
	// by this player's previous incarnation, which failed before it could
	// report.
	rec, ok, err := p.Store.Recording(p.rec.ID)
	if err != nil {
		panic(fmt.Errorf("load recording %s: %w", p.rec.ID, err))
	}
	if !ok {
		p.log.Info().Msg("session recording already sent")
		ctx.Send(ctx.Parent(), &playerDone{epoch: p.mgr, pid: ctx.Self(), rec: p.rec, outcome: finished}) // the manager stops it
		return
	}
	p.rec = rec
	p.next = p.rec.Index
	p.tr = inflight.Tracker[playerPos]{URL: URLFor(p.URL, p.rec.ID), Stream: metrics.Session, Pool: p.Pool,
		Filter: p.Filter, Metrics: p.Metrics, Encode: p.encoder(), Window: p.Window}
	p.tr.Reset(p.epoch)
	if p.rec.Index > 0 {
		p.log.Info().Int64("index", p.rec.Index).Msg("resuming session recording")
	} else {
		p.log.Debug().Msg("streaming session recording")
	}
	p.startStream(ctx)
}

// encoder is the Encode of the player's recording.
func (p *player) encoder() inflight.Encode {
	if p.EncodeFor == nil {
		return nil
	}
	return p.EncodeFor(p.rec.ID)
}

// startStream reads the recording from its index in a goroutine that
// forwards each event to the actor, holding a credit per event, so that at
// most Window events are read ahead of the checkpoint.
func (p *player) startStream(ctx actor.Context) {
	p.credits = make(chan struct{}, p.Window)
	self, root, epoch, credits := ctx.Self(), ctx.ActorSystem().Root, p.epoch, p.credits
	filter, encode, dryRun, sessions, sid, from := p.Filter, p.encoder().Or(), p.DryRun, p.Sessions, p.rec.ID, p.next
	p.stream = supervisor.Go(context.Background(), func(ctx context.Context) {
		events, errs := sessions.StreamUnstructuredSessionEvents(ctx, sid, from)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					root.Send(self, &streamEnd{epoch: epoch})
					return
				}
				fetched := time.Now()
				var body []byte
				if filter.Sends(ev.Type) && !dryRun {
					body = encode(ev)
				}
				select {
				case credits <- struct{}{}:
				case <-ctx.Done():
					return
				}
				root.Send(self, &streamEvent{epoch: epoch, ev: ev, body: body, fetched: fetched})
			case err := <-errs:
				root.Send(self, &streamEnd{epoch: epoch, err: err})
				return
			case <-ctx.Done():
				return
			}
		}
	})
}

func (p *player) onEvent(ctx actor.Context, m *streamEvent) {
	if p.ending {
		<-p.credits
		return
	}
	p.moved = true
	p.read++
	p.next = m.ev.Index + 1
	p.tr.Event(m.ev, playerPos{index: p.next}, m.fetched, m.body)
	p.pump(ctx)
}

// release returns the credits of checkpointed events to the reader. Events
// take seqs 1, 2, ... in the order read, so those up to p.saved are on disk.
func (p *player) release() {
	for ; p.freed < min(p.saved, p.read); p.freed++ {
		<-p.credits
	}
}

func (p *player) pump(ctx actor.Context) {
	var dryRun func(*inflight.Item[playerPos])
	if p.DryRun {
		dryRun = func(it *inflight.Item[playerPos]) {
			p.log.Info().Str("event_type", it.Ev.Type).Int64("index", it.Ev.Index).Msg("dry run: would send session event")
		}
	}
	p.tr.HandOut(ctx, dryRun)
	p.advance(ctx)
	if p.endSeq != 0 && p.tr.Settled() {
		if p.outcome == finished {
			p.Metrics.SessionsFinished.Inc()
			// At debug: one line per recording would bury the rest.
			p.log.Debug().Int64("events", p.rec.Index).Msg("session recording sent")
		}
		ctx.Send(ctx.Parent(), &playerDone{epoch: p.mgr, pid: ctx.Self(), rec: p.rec, outcome: p.outcome}) // the manager stops it
		p.endSeq = 0
	}
}

// advance checkpoints the index after the settled prefix; past the end
// marker, the recording's final state: removed once finished or given up,
// else kept for the next attempt.
func (p *player) advance(ctx actor.Context) {
	end := false
	last := p.tr.Advance(func(it *inflight.Item[playerPos]) { end = end || it.Pos.end })
	if last == nil {
		return
	}
	p.rec.Index = last.Pos.index
	writes := persistence.RecordingWrites(p.rec)
	if end {
		p.endSeq = last.Seq
		switch p.outcome {
		case finished:
			writes = persistence.RecordingDeletes(p.rec)
		case gaveUp:
			// Kept apart, for sessions retry|drop.
			writes = persistence.RecordingGiveUpWrites(p.rec, p.why, p.Clock.Now().UTC())
		}
	}
	ctx.Send(p.Checkpoint, &messages.Save{Key: Key(p.rec.ID), Epoch: p.epoch, Seq: last.Seq, Writes: writes, ReplyTo: ctx.Self()})
}

func (p *player) onEnd(ctx actor.Context, err error) {
	if err == nil {
		p.end(ctx, finished)
		return
	}
	p.Metrics.TeleportErrors.WithLabelValues("StreamUnstructuredSessionEvents", metrics.ErrorKind(err)).Inc()
	now := p.Clock.Now()
	if p.moved {
		p.rec.Failures = 1 // the recording moved on since its last failure
	} else {
		p.rec.Failures++
	}
	switch {
	case trace.IsNotFound(err) && p.rec.Index == 0 && !p.moved:
		// Uploads can lag their event; old events' recordings will not come.
		p.rec.NotFound++
		deadline := p.rec.UploadTime.Add(p.UploadWait)
		if p.rec.NotFound >= p.MinAttempts && now.After(deadline) {
			p.log.Error().Err(err).Int("failures", p.rec.NotFound).Time("upload_time", p.rec.UploadTime).
				Msg("session recording not found; giving up on it")
			p.Metrics.SessionsGivenUp.WithLabelValues("not_found").Inc()
			p.why = "not_found"
			p.end(ctx, gaveUp)
			return
		}
	case teleport.Transient(err):
		// Teleport is unreachable or busy: retry for as long as it takes.
	default:
		if p.rec.Failures >= maxFailures {
			p.log.Error().Err(err).Int("failures", p.rec.Failures).Int64("index", p.next).
				Msg("streaming the session recording keeps failing; giving up on it")
			p.Metrics.SessionsGivenUp.WithLabelValues("failing").Inc()
			p.why = "failing"
			p.end(ctx, gaveUp)
			return
		}
	}
	p.rec.NotBefore = now.Add(retries.Delay(p.rec.Failures))
	p.log.Warn().Err(err).Int("failures", p.rec.Failures).Time("retry_at", p.rec.NotBefore).
		Msg("streaming the session recording failed; retrying")
	p.end(ctx, retry)
}

// end stops reading and queues the end marker: once every event read is
// settled, the recording's final state is written and the manager told.
func (p *player) end(ctx actor.Context, o outcome) {
	if p.ending {
		return
	}
	p.stream.Stop()
	p.stream = nil
	p.ending, p.outcome = true, o
	if o == finished {
		p.rec.Failures, p.rec.NotBefore = 0, time.Time{}
	}
	p.tr.Mark(playerPos{index: p.next, end: true})
	p.pump(ctx)
}
