// Package poller pages the audit log out of Teleport and hands each event to
// the Fluentd pool, advancing the checkpoint only over a contiguous run of
// settled events (a watermark).
//
// Memory and duplicates are both bounded by Window: at most Window events are
// handed out and not yet checkpointed at any time, so after a crash at most
// Window events are sent again, and at most two pages are buffered.
package poller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/backoff"
	"github.com/fdfwd/teleport-event-handler/eventjson"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Name is the poller's name under the root.
const Name = "poller"

// StreamKey is the checkpoint key of the audit stream.
const StreamKey = "audit"

// Searcher is the Teleport API call the poller uses.
type Searcher interface {
	SearchUnstructuredEvents(ctx context.Context, from, to time.Time, namespace string, eventTypes []string, limit int, order types.EventOrder, startKey string) ([]*auditlogpb.EventUnstructured, string, error)
}

// namespace is the only audit namespace Teleport has.
const namespace = "default"

// Deps configure the poller.
type Deps struct {
	Events     Searcher
	Store      *persistence.Store // read once per start
	Checkpoint *actor.PID
	Pool       *actor.PID // unused with DryRun
	URL        string     // --fluentd-url

	StartTime  time.Time
	WindowSize time.Duration
	Timeout    time.Duration // wait between polls once caught up
	Batch      int
	Types      []string        // asked of Teleport
	Skip       map[string]bool // dropped here
	// Window is the most events handed out and not yet checkpointed.
	Window int

	// Taps see the events they want (whatever --skip-event-types says) and
	// hold the checkpoint back until they have recorded them. At most 64.
	Taps []Tap

	DryRun          bool
	ExitOnLastEvent bool
	Now             func() time.Time
	Log             zerolog.Logger
	Metrics         *metrics.Metrics // nil: private ones
}

// Tap is an actor that observes some audit events.
type Tap = inflight.Tap

// MinWindow is the least in-flight window WindowFor gives: events wait for
// a checkpoint transaction (at most every checkpoint.DefaultInterval) after
// Fluentd's answer, and the window must cover that wait at the rates a
// single Fluentd takes (about 10k events/s) or the stream stalls on it.
const MinWindow = 256

// WindowFor returns the default in-flight window for a pool that carries
// capacity events at once (pool.Capacity: connections x events per
// POST): enough to keep every connection busy while checkpoints are being
// written.
func WindowFor(capacity, batch int) int {
	return max(4*capacity, batch, MinWindow)
}

// fetchBackoff is the wait after failed searches in a row.
var fetchBackoff = backoff.Policy{Initial: time.Second, Max: time.Minute}

// fetch request and result.
type fetchReq struct {
	winStart, to time.Time
	key          string
	skip         int
}

type pageResult struct {
	epoch  uint64
	req    fetchReq
	events []*auditlogpb.EventUnstructured
	// bodies are the events' JSON, encoded by the fetcher while the actor
	// hands out the previous page; nil for the skipped types.
	bodies [][]byte
	// fetched is when the page arrived.
	fetched  time.Time
	nextKey  string
	issuedAt time.Time
	err      error
}

type fetchTick struct{ epoch uint64 }

// item is one event (or a window boundary) in order; Pos is where the
// stream resumes once it and everything before it are settled.
type item = inflight.Item[persistence.AuditPosition]

// Poller is the actor.
type Poller struct {
	Deps
	log   zerolog.Logger
	epoch uint64

	// fetch position
	winStart time.Time
	pageKey  string
	skip     int
	lastID   string
	lastTime time.Time

	fetching   bool
	fetchFails int
	timer      *time.Timer
	// fetches goes to the goroutine that makes the page requests, one at a
	// time; stopFetches ends it and the request it may be making.
	fetches     chan<- fetchReq
	stopFetches context.CancelFunc
	caughtUp    bool

	// tr holds the events fetched and not yet checkpointed.
	tr inflight.Tracker[persistence.AuditPosition]

	ackedSeq uint64
	acked    uint64 // events settled since the first run
	ackPos   persistence.AuditPosition

	// saving is set while a Save is on its way to the checkpoint writer;
	// resave says the watermark moved since, so another one follows its
	// Saved. Only the newest position matters, so one at a time is enough.
	saving, resave bool

	sub      *eventstream.Subscription
	draining bool
	drainTo  *actor.PID
	finished bool
}

// New returns a poller; spawn it with actor.PropsFromProducer.
func New(d Deps) *Poller {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Window <= 0 {
		d.Window = max(d.Batch, 1)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	return &Poller{Deps: d}
}

// Props returns the props of a poller with fixed deps.
func Props(d Deps, opts ...actor.PropsOption) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return New(d) }, opts...)
}

// Receive implements actor.Actor.
func (p *Poller) Receive(ctx actor.Context) {
	faults.Inject("poller", ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.start(ctx)
	case *fetchTick:
		if m.epoch == p.epoch {
			p.timer, p.caughtUp = nil, false
			p.maybeFetch(ctx)
		}
	case *pageResult:
		if m.epoch == p.epoch {
			p.onPage(ctx, m)
		}
	case *messages.Delivered:
		if p.tr.Delivered(m) {
			p.pump(ctx)
		}
	case *messages.Saved:
		if m.Epoch == p.epoch {
			p.saving = false
			if p.tr.Persisted(m.Seq) {
				if m.Seq == p.ackedSeq {
					p.Metrics.SetAcked(p.ackPos.LastTime)
				}
			}
			if p.resave {
				p.resave = false
				p.save(ctx)
			}
			p.pump(ctx)
		}
	case *messages.Observed:
		if p.tr.Observed(m) {
			p.pump(ctx)
		}
	case *messages.TapStarted:
		p.tr.TapStarted(ctx, m.PID)
	case *messages.Drain:
		p.draining, p.drainTo = true, ctx.Sender()
		p.stopTimer()
		p.pump(ctx)
	case *actor.Restarting, *actor.Stopping:
		p.stop(ctx)
	}
}

func (p *Poller) start(ctx actor.Context) {
	p.epoch = rand.Uint64()
	p.log = p.Log.With().Str("actor", Name).Logger()
	pos, ok, err := p.Store.AuditPosition()
	if err != nil {
		panic(fmt.Errorf("load audit position: %w", err))
	}
	if !ok {
		pos = persistence.AuditPosition{WindowStart: p.StartTime}
	}
	p.winStart, p.pageKey, p.skip = pos.WindowStart, pos.Cursor, pos.Offset
	p.lastID, p.lastTime, p.acked, p.ackPos = pos.LastID, pos.LastTime, pos.Acked, pos
	p.tr = inflight.Tracker[persistence.AuditPosition]{URL: p.URL, Stream: metrics.Audit, Pool: p.Pool, Taps: p.Taps, Window: p.Window}
	p.tr.Reset(p.epoch)
	p.log.Info().Time("window_start", pos.WindowStart).Int("offset", pos.Offset).Str("last_id", pos.LastID).
		Uint64("acked", pos.Acked).Msg("audit stream resumes")

	self, root := ctx.Self(), ctx.ActorSystem().Root
	fetches := make(chan fetchReq, 1)
	fctx, cancel := context.WithCancel(context.Background())
	p.fetches, p.stopFetches = fetches, cancel
	go fetcher(fctx, fetches, p.Events, p.Types, p.Skip, p.Batch, p.Now, p.epoch, self, root)
	p.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
		switch evt.(type) {
		case *messages.TapStarted:
			root.Send(self, evt)
		}
	})
	p.maybeFetch(ctx)
}

func (p *Poller) stop(ctx actor.Context) {
	p.stopTimer()
	if p.stopFetches != nil {
		p.stopFetches()
		p.stopFetches = nil
	}
	if p.sub != nil {
		ctx.ActorSystem().EventStream.Unsubscribe(p.sub)
		p.sub = nil
	}
}

func (p *Poller) stopTimer() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// maybeFetch starts the next page request unless one is running, the
// buffer already holds a page, or a wait is pending.
func (p *Poller) maybeFetch(ctx actor.Context) {
	if p.fetching || p.draining || p.timer != nil || p.finished || p.tr.Buffered() >= p.Batch {
		return
	}
	if p.caughtUp {
		return // the --timeout timer (or --exit-on-last-event) decides
	}
	p.fetching = true
	p.fetches <- fetchReq{winStart: p.winStart, to: p.winStart.Add(p.WindowSize), key: p.pageKey, skip: p.skip}
}

// fetcher makes the page requests of one poller incarnation until ctx ends.
// A long-lived goroutine keeps its stack grown, where one per request
// would grow a fresh stack through the gRPC client every time.
func fetcher(ctx context.Context, reqs <-chan fetchReq, events Searcher, types_ []string, skip map[string]bool, batch int, now func() time.Time,
	epoch uint64, self *actor.PID, root *actor.RootContext) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-reqs:
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			issued := now()
			evs, next, err := events.SearchUnstructuredEvents(rctx, req.winStart, req.to, namespace, types_, batch, types.EventOrderAscending, req.key)
			cancel()
			if ctx.Err() != nil {
				return
			}
			fetched := time.Now()
			var bodies [][]byte
			if err == nil {
				bodies = make([][]byte, len(evs))
				for i, ev := range evs {
					if i >= req.skip && !skip[ev.Type] {
						bodies[i] = eventjson.Event(ev)
					}
				}
			}
			root.Send(self, &pageResult{epoch: epoch, req: req, events: evs, bodies: bodies, fetched: fetched, nextKey: next, issuedAt: issued, err: err})
		}
	}
}

func (p *Poller) onPage(ctx actor.Context, r *pageResult) {
	p.fetching = false
	p.Metrics.Health.TeleportCall(r.err)
	if r.err != nil {
		p.Metrics.TeleportErrors.WithLabelValues("SearchUnstructuredEvents", metrics.ErrorKind(r.err)).Inc()
		p.fetchFails++
		delay := fetchBackoff.Delay(p.fetchFails)
		p.log.Error().Err(r.err).Int("failures", p.fetchFails).Dur("retry_in", delay).
			Msg("searching audit events failed; retrying")
		p.schedule(ctx, delay)
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
	fetched := r.fetched
	if fetched.IsZero() {
		fetched = time.Now()
	}
	for i, ev := range r.events {
		if i < r.req.skip {
			continue
		}
		it := &item{Ev: ev, Fetched: fetched, Pos: persistence.AuditPosition{
			WindowStart: r.req.winStart, Cursor: r.req.key, Offset: i + 1,
			LastID: ev.Id, LastTime: ev.Time.AsTime(),
		}}
		p.lastID, p.lastTime = ev.Id, it.Pos.LastTime
		p.Metrics.EventsFetched.WithLabelValues(metrics.Audit).Inc()
		if p.Skip[ev.Type] {
			p.Metrics.EventsSkipped.WithLabelValues(metrics.Audit, "type").Inc()
		} else {
			var body []byte
			if i < len(r.bodies) {
				body = r.bodies[i]
			}
			if body == nil {
				body = eventjson.Event(ev)
			}
			it.Body, it.Sending = body, true
		}
		it.Taps = p.tr.TapsFor(ev)
		p.tr.Add(it)
	}
	switch {
	case r.nextKey != "":
		p.pageKey, p.skip, p.caughtUp = r.nextKey, max(0, r.req.skip-len(r.events)), false
	case !r.req.to.After(r.issuedAt):
		// The window is in the past and fully read: move to the next.
		p.winStart, p.pageKey, p.skip = r.req.to, "", 0
		p.tr.Add(&item{Pos: persistence.AuditPosition{
			WindowStart: p.winStart, LastID: p.lastID, LastTime: p.lastTime,
		}})
	default:
		// Caught up with the live window: read this page again after
		// --timeout and skip what it already gave.
		p.skip = max(r.req.skip, len(r.events))
		p.caughtUp = true
		if !p.ExitOnLastEvent {
			p.schedule(ctx, p.Timeout)
		}
	}
	p.pump(ctx)
}

func (p *Poller) schedule(ctx actor.Context, d time.Duration) {
	p.stopTimer()
	self, root, epoch := ctx.Self(), ctx.ActorSystem().Root, p.epoch
	p.timer = time.AfterFunc(d, func() { root.Send(self, &fetchTick{epoch: epoch}) })
}

// pump hands out buffered events within the window, advances the watermark,
// fetches more and checks whether the stream is done.
func (p *Poller) pump(ctx actor.Context) {
	if !p.draining {
		var dryRun func(*item)
		if p.DryRun {
			dryRun = func(it *item) {
				p.log.Info().Str("event_id", it.Ev.Id).Str("event_type", it.Ev.Type).Time("time", it.Pos.LastTime).
					Msg("dry run: would send event")
			}
		}
		p.tr.HandOut(ctx, dryRun)
	}
	p.advance(ctx)
	p.maybeFetch(ctx)
	p.maybeFinish(ctx)
}

// advance moves the watermark over the settled prefix and asks for a
// checkpoint when it moved.
func (p *Poller) advance(ctx actor.Context) {
	last := p.tr.Advance(func(it *item) {
		if it.Ev != nil {
			p.acked++
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
	ctx.Send(p.Checkpoint, &messages.Save{Key: StreamKey, Epoch: p.epoch, Seq: p.ackedSeq,
		Writes: []persistence.Write{persistence.AuditPositionWrite(p.ackPos)}, ReplyTo: ctx.Self()})
}

func (p *Poller) maybeFinish(ctx actor.Context) {
	settled := p.tr.Settled()
	if p.draining && settled && p.drainTo != nil {
		ctx.Send(p.drainTo, &messages.Drained{})
		p.drainTo = nil
	}
	if p.ExitOnLastEvent && !p.finished && p.caughtUp && !p.fetching && p.tr.Buffered() == 0 && settled {
		p.finished = true
		p.log.Info().Uint64("acked", p.acked).Msg("caught up with the audit log")
		ctx.Send(ctx.Parent(), &messages.CaughtUp{Name: Name, Events: p.acked})
		for _, tap := range p.Taps {
			ctx.Send(tap.PID, &messages.CaughtUp{Name: Name, Events: p.acked})
		}
	}
}
