// Package poller pages the audit log out of Teleport with search and hands
// each event to the Fluentd pool and to the taps that want it, advancing
// the checkpoint only over a contiguous run of settled events (the
// watermark, kept by inflight.Tracker).
//
// Memory and duplicates are both bounded by Window: at most Window events are
// handed out and not yet checkpointed at any time, so after a crash at most
// Window events are sent again, and at most two pages are buffered.
package poller

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Name is the poller's name under the root.
const Name = "poller"

// StreamKey is the checkpoint key of the audit stream.
const StreamKey = "audit"

// Searcher is the Teleport API call the poller uses.
type Searcher interface {
	SearchUnstructuredEvents(ctx context.Context, from, to time.Time, namespace string, eventTypes []string, limit int, order types.EventOrder, startKey string) ([]*auditlogpb.EventUnstructured, string, error)
}

// Deps configure the poller.
type Deps struct {
	Events     Searcher
	Store      *persistence.Store // read once per start
	Checkpoint *actor.PID
	Pool       *actor.PID // unused with DryRun
	URL        string     // --fluentd-url
	// Encode makes the body of each event sent (nil: its JSON).
	Encode inflight.Encode

	StartTime  time.Time
	WindowSize time.Duration
	Timeout    time.Duration // wait between polls once caught up
	// Batch is the events per search page, the first page's when pages
	// grow: GrowTo, when above it, is the most a page may grow to while a
	// backlog is read (pages.go).
	Batch  int
	GrowTo int
	// Filter says what is sent; the types it lets through are what
	// Teleport is asked for.
	Filter inflight.Filter
	// Window is the most events handed out and not yet checkpointed.
	Window int
	// Lag is --late-event-lag: how long after its time an event that search
	// shows late is still delivered, by the trailing cursor (late.go); 0
	// leaves it out.
	Lag time.Duration

	// Taps see the events they want (whatever the filter says) and hold
	// the checkpoint back until they have recorded them. At most 64.
	Taps []inflight.Tap

	DryRun          bool
	ExitOnLastEvent bool
	Clock           clockwork.Clock
	Log             zerolog.Logger
	Metrics         *metrics.Metrics // nil: private ones
	Kit             supervisor.Kit
}

// retries is the wait after failed searches in a row.
var retries = backoff.Policy{Initial: time.Second, Max: time.Minute}

// fetchReq asks the fetcher for a page: the events of (winStart, to) from
// cursor key, of which the first skip are checkpointed already.
type fetchReq struct {
	winStart, to time.Time
	key          string
	skip         int
	limit        int  // the page size
	trail        bool // a page of the trailing cursor
}

type pageResult struct {
	epoch  messages.Epoch
	req    fetchReq
	events []*auditlogpb.EventUnstructured
	// bodies are the events' JSON, encoded by the fetcher while the actor
	// hands out the previous page; nil for the ones not sent.
	bodies [][]byte
	// fetched is when the page arrived.
	fetched  time.Time
	nextKey  string
	issuedAt time.Time
	err      error
}

// fetchTick ends a wait: after a failed search, or between polls of the
// live window.
type fetchTick struct{}

// Poller is the actor.
type Poller struct {
	Deps
	log   zerolog.Logger
	epoch messages.Epoch

	// fetch position
	winStart time.Time
	pageKey  string
	skip     int
	lastID   string
	lastTime time.Time

	pages      pages
	fetching   bool
	fetchFails int
	// live is set while the last page read was of the present (caught up
	// with what search shows), for the lag.
	live bool
	wait timer.Timer
	// fetches goes to the goroutine that makes the page requests, one at a
	// time.
	fetches  chan<- fetchReq
	fetcher  *supervisor.Task
	caughtUp bool

	// tr holds the events fetched and not yet checkpointed.
	tr inflight.Tracker[persistence.AuditPosition]

	ackedSeq uint64
	acked    uint64 // events settled since the first run
	ackPos   persistence.AuditPosition

	// saving is set while a Save is on its way to the checkpoint writer;
	// resave says the watermark moved since, so another one follows its
	// Saved. Only the newest position matters, so one at a time is enough.
	saving, resave bool

	// late is the trailing cursor; nil without --late-event-lag. The
	// events the live cursor passed that it may meet again are recorded
	// in it, and stored with the next checkpoint (trail.flushSeen).
	late *trail

	sub      *eventstream.Subscription
	draining bool
	drainTo  *actor.PID
	finished bool
}

// New returns a poller; spawn it with actor.PropsFromProducer.
func New(d Deps) *Poller {
	d.Clock = timer.Or(d.Clock)
	if d.Window <= 0 {
		d.Window = max(d.Batch, 1)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	return &Poller{Deps: d, wait: timer.Timer{Clock: d.Clock}}
}

// Props returns the poller's props, made by d.Kit.
func Props(d Deps) *actor.Props {
	return d.Kit.Props(Name, func() actor.Actor { return New(d) })
}

// Receive implements actor.Actor.
func (p *Poller) Receive(ctx actor.Context) {
	switch m := supervisor.Fault(timer.Message(ctx), Name).(type) {
	case *actor.Started:
		p.start(ctx)
	case *fetchTick:
		p.caughtUp = false
		p.maybeFetch()
	case *trailTick:
		p.maybeFetchTrail(ctx)
	case *pageResult:
		switch {
		case m.epoch != p.epoch:
		case m.req.trail:
			p.onTrailPage(ctx, m)
		default:
			p.onPage(ctx, m)
		}
	case *messages.Delivered, *messages.Answers, *messages.Observed:
		// Answers may hold answers of both trackers: each takes its own.
		live := p.tr.Answered(m)
		if late := p.late != nil && p.late.tr.Answered(m); live || late {
			p.pump(ctx)
		}
	case *messages.SaveFailed:
		if m.Epoch == p.epoch {
			// The position cannot be stored: going on would resend
			// everything since the last one after the next restart, for
			// ever. Stop with the cause.
			panic(fmt.Errorf("audit stream: %w", m.Err))
		}
	case *messages.Saved:
		switch {
		case m.Epoch != p.epoch:
		case m.Key == TrailKey:
			p.onTrailSaved(ctx, m)
		default:
			p.onSaved(ctx, m)
		}
	case *messages.TapStarted:
		p.tr.TapStarted(ctx, m.PID)
		if p.late != nil {
			p.late.tr.TapStarted(ctx, m.PID)
		}
	case *messages.Drain:
		p.draining, p.drainTo = true, ctx.Sender()
		p.wait.Stop()
		p.pump(ctx)
	case *actor.Restarting, *actor.Stopping:
		p.stop(ctx)
	}
}

func (p *Poller) start(ctx actor.Context) {
	p.epoch = messages.NewEpoch()
	p.log = p.Log.With().Str("actor", Name).Logger()
	pos, ok, err := p.Store.AuditPosition()
	if err != nil {
		panic(fmt.Errorf("load audit position: %w", err))
	}
	if !ok {
		pos = persistence.AuditPosition{WindowStart: p.StartTime}
	}
	p.winStart, p.pageKey, p.skip = pos.WindowStart, pos.Cursor, pos.Offset
	p.pages = newPages(p.Batch, p.GrowTo)
	p.pages.resume(p.skip)
	p.lastID, p.lastTime, p.acked, p.ackPos = pos.LastID, pos.LastTime, pos.Acked, pos
	p.tr = inflight.Tracker[persistence.AuditPosition]{URL: p.URL, Stream: metrics.Audit, Pool: p.Pool,
		Taps: p.Taps, Filter: p.Filter, Metrics: p.Metrics, Encode: p.Encode, Window: p.Window}
	p.tr.Reset(p.epoch)
	p.startTrail()
	p.log.Info().Time("window_start", pos.WindowStart).Int("offset", pos.Offset).Str("last_id", pos.LastID).
		Uint64("acked", pos.Acked).Msg("audit stream resumes")

	self, root := ctx.Self(), ctx.ActorSystem().Root
	fetches := make(chan fetchReq, 2) // one of each cursor
	p.fetches = fetches
	epoch := p.epoch
	f := fetcher{events: p.Events, filter: p.Filter, encode: p.Encode.Or(), types: p.Filter.Types(), now: p.Clock.Now,
		reply: func(r *pageResult) { r.epoch = epoch; root.Send(self, r) }}
	p.fetcher = supervisor.Go(context.Background(), func(ctx context.Context) { f.run(ctx, fetches) })
	p.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*messages.TapStarted); ok {
			root.Send(self, evt)
		}
	})
	p.maybeFetch()
}

func (p *Poller) stop(ctx actor.Context) {
	p.wait.Stop()
	if p.late != nil {
		p.late.wait.Stop()
	}
	p.fetcher.Stop()
	p.fetcher = nil
	if p.sub != nil {
		ctx.ActorSystem().EventStream.Unsubscribe(p.sub)
		p.sub = nil
	}
}

// maybeFetch starts the next page request unless one is running, the
// buffer already holds a page, or a wait is pending.
func (p *Poller) maybeFetch() {
	if p.fetching || p.draining || p.wait.Armed() || p.finished || p.tr.Buffered() >= p.pages.size {
		return
	}
	if p.caughtUp {
		return // the --timeout timer (or --exit-on-last-event) decides
	}
	p.fetching = true
	p.Metrics.TeleportSearches.WithLabelValues("live").Inc()
	p.fetches <- fetchReq{winStart: p.winStart, to: p.winStart.Add(p.WindowSize), key: p.pageKey, skip: p.skip, limit: p.pages.size}
}

// fetcher makes the page requests of one poller incarnation. A long-lived
// goroutine keeps its stack grown, where one per request would grow a
// fresh stack through the gRPC client every time.
type fetcher struct {
	events Searcher
	filter inflight.Filter
	encode inflight.Encode
	types  []string
	now    func() time.Time
	reply  func(*pageResult)
}

func (f fetcher) run(ctx context.Context, reqs <-chan fetchReq) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-reqs:
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			issued := f.now()
			evs, next, err := f.events.SearchUnstructuredEvents(rctx, req.winStart, req.to, teleport.Namespace, f.types, req.limit, types.EventOrderAscending, req.key)
			cancel()
			if ctx.Err() != nil {
				return
			}
			r := &pageResult{req: req, events: evs, fetched: time.Now(), nextKey: next, issuedAt: issued, err: err}
			if err == nil {
				r.bodies = make([][]byte, len(evs))
				for i, ev := range evs {
					if i >= req.skip && f.filter.Sends(ev.Type) {
						r.bodies[i] = f.encode(ev)
					}
				}
			}
			f.reply(r)
		}
	}
}

func (p *Poller) onPage(ctx actor.Context, r *pageResult) {
	p.fetching = false
	p.Metrics.Health.TeleportCall(ctx.Self().Id, r.err)
	if r.err != nil {
		p.Metrics.TeleportErrors.WithLabelValues("SearchUnstructuredEvents", metrics.ErrorKind(r.err)).Inc()
		p.fetchFails++
		delay := retries.Delay(p.fetchFails)
		p.log.Error().Err(r.err).Int("failures", p.fetchFails).Dur("retry_in", delay).
			Msg("searching audit events failed; retrying")
		p.wait.After(ctx, delay, &fetchTick{})
		return
	}
	if p.fetchFails > 0 {
		p.log.Info().Int("failures", p.fetchFails).Msg("searching audit events works again")
		p.fetchFails = 0
	}
	if r.req.skip > 0 && r.req.skip <= len(r.events) && p.lastID != "" && r.events[r.req.skip-1].Id != p.lastID {
		p.log.Warn().Str("expected", p.lastID).Str("found", r.events[r.req.skip-1].Id).
			Msg("the page at the checkpoint changed since it was read; resuming by position")
	}
	p.read(r)
	frontier := p.lastTime
	p.live = false
	switch {
	case r.nextKey != "":
		p.pageKey, p.skip, p.caughtUp = r.nextKey, max(0, r.req.skip-len(r.events)), false
		p.pages.more()
	case !r.req.to.After(r.issuedAt):
		// The window is in the past and fully read: move to the next.
		p.winStart, p.pageKey, p.skip = r.req.to, "", 0
		p.tr.Mark(persistence.AuditPosition{WindowStart: p.winStart, LastID: p.lastID, LastTime: p.lastTime})
		frontier = r.req.to
	default:
		// Caught up with the live window: read this page again after
		// --timeout and skip what it already gave.
		p.skip = max(r.req.skip, len(r.events))
		p.caughtUp, p.live = true, true
		if p.pages.anchor(p.skip) {
			p.caughtUp = false // the anchoring page now, the wait after it
			break
		}
		if !p.ExitOnLastEvent {
			p.wait.After(ctx, p.Timeout, &fetchTick{})
		}
		frontier = r.issuedAt
	}
	if p.late != nil {
		p.late.liveRead(frontier, r.issuedAt, p.Lag)
	}
	p.pump(ctx)
}

// read queues the page's events that are not checkpointed yet.
func (p *Poller) read(r *pageResult) {
	for i, ev := range r.events {
		if i < r.req.skip {
			continue
		}
		pos := persistence.AuditPosition{WindowStart: r.req.winStart, Cursor: r.req.key, Offset: i + 1,
			LastID: ev.Id, LastTime: ev.Time.AsTime()}
		p.lastID, p.lastTime = ev.Id, pos.LastTime
		if p.late != nil && p.late.handedOut(ev.Id, pos.LastTime) {
			p.tr.Pass(ev, pos) // read again: the page grew before the offset
			continue
		}
		var body []byte
		if i < len(r.bodies) {
			body = r.bodies[i]
		}
		p.tr.Event(ev, pos, r.fetched, body)
	}
}

// pump hands out buffered events within the window, advances the watermark,
// fetches more and checks whether the stream is done.
func (p *Poller) pump(ctx actor.Context) {
	if !p.draining {
		p.tr.HandOut(ctx, dryRunOf[persistence.AuditPosition](p))
	}
	p.advance(ctx)
	p.maybeFetch()
	p.pumpTrail(ctx)
	p.reportPending()
	p.maybeFinish(ctx)
}

// reportPending tells the metrics the time of the oldest event not yet
// confirmed: in flight, else the next to read (none once the live cursor
// has read the present and everything read is settled).
func (p *Poller) reportPending() {
	pending := p.tr.Oldest()
	if pending.IsZero() && !p.live {
		pending = later(p.winStart, p.lastTime)
	}
	if p.late != nil {
		if late := p.late.tr.Oldest(); !late.IsZero() && (pending.IsZero() || late.Before(pending)) {
			pending = late
		}
	}
	p.Metrics.SetPending(pending)
}

// dryRunOf logs, with --dry-run, the events a cursor would send; nil
// without.
func dryRunOf[P any](p *Poller) func(*inflight.Item[P]) {
	if !p.DryRun {
		return nil
	}
	return func(it *inflight.Item[P]) {
		p.log.Info().Str("event_id", it.Ev.Id).Str("event_type", it.Ev.Type).Time("event_time", it.Ev.Time.AsTime()).
			Msg("dry run: would send event")
	}
}

// advance moves the watermark over the settled prefix and asks for a
// checkpoint when it moved.
func (p *Poller) advance(ctx actor.Context) {
	last := p.tr.Advance(func(it *inflight.Item[persistence.AuditPosition]) {
		if it.Ev == nil {
			return
		}
		p.acked++
		if at := it.Ev.Time.AsTime(); p.late != nil && !at.Before(p.late.durable) {
			p.late.passed(at, it.Ev.Id)
		}
	})
	if last == nil {
		return
	}
	p.ackedSeq, p.ackPos = last.Seq, last.Pos
	p.ackPos.Acked = p.acked
	if p.saving {
		p.resave = true
		return
	}
	p.save(ctx)
}

// save asks the checkpoint writer to store the watermark.
func (p *Poller) save(ctx actor.Context) {
	p.saving = true
	writes := []kv.Write{persistence.AuditPositionWrite(p.ackPos)}
	if p.late != nil {
		writes = append(writes, p.late.flushSeen()...)
	}
	ctx.Send(p.Checkpoint, &messages.Save{Key: StreamKey, Epoch: p.epoch, Seq: p.ackedSeq, Writes: writes, ReplyTo: ctx.Self()})
}

func (p *Poller) onSaved(ctx actor.Context, m *messages.Saved) {
	p.saving = false
	if p.tr.Persisted(m.Seq) && m.Seq == p.ackedSeq {
		p.Metrics.SetAcked(p.ackPos.LastTime)
	}
	if p.resave {
		p.resave = false
		p.save(ctx)
	}
	p.pump(ctx)
}

func (p *Poller) maybeFinish(ctx actor.Context) {
	settled := p.tr.Settled() && p.trailSettled()
	if p.draining && settled && p.drainTo != nil {
		ctx.Send(p.drainTo, &messages.Drained{})
		p.drainTo = nil
	}
	if p.ExitOnLastEvent && !p.finished && p.caughtUp && !p.fetching && p.tr.Buffered() == 0 && settled && p.trailDone() {
		p.finished = true
		p.log.Info().Uint64("acked", p.acked).Msg("caught up with the audit log")
		ctx.Send(ctx.Parent(), &messages.CaughtUp{Name: Name, Events: p.acked})
		for _, tap := range p.Taps {
			ctx.Send(tap.PID, &messages.CaughtUp{Name: Name, Events: p.acked})
		}
	}
}
