package poller

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// TrailKey is the checkpoint key of the trailing cursor.
const TrailKey = "audit-trail"

// trail is the trailing cursor (--late-event-lag). Search can show an event
// after later ones: Athena lands events in S3 in batches, DynamoDB's time
// index is eventually consistent, nodes with skewed clocks or buffered
// emission write events stamped in the past. The live cursor never reads
// such an event: it has passed its time. The trailing cursor reads each
// span of the log once more, lag after the span, and hands out only the
// events whose IDs were not handed out: the late ones.
//
// A span needs reading once, lag after its end, because an event of time t
// that becomes visible within lag is visible by t+lag. And what the live
// cursor read at time r holds every event before r-lag that becomes
// visible within lag: only the last lag of what it read needs the trailing
// cursor, which skips the rest (a backfill is not read twice).
type trail struct {
	// seen are the events handed out (by either cursor) at or after start,
	// by digest. Those a checkpoint passed are in sets too, by second, and
	// go to the state file with the next save, the sets of the seconds in
	// dirty whole.
	seen  map[persistence.SeenDigest]time.Time
	sets  map[int64][]persistence.SeenDigest
	dirty map[int64]bool
	// The span being read is [start, end); start == end between spans.
	start, end time.Time
	// durable is the start of the span of the last checkpoint on disk, and
	// saving that of the checkpoint on its way: after a restart the
	// trailing cursor may meet anything from durable on, so the live
	// cursor records what it hands out from there.
	durable, savingStart time.Time
	key                  string
	skip                 int
	// frontier: the live cursor has read what was visible, when it read
	// it, of the log before frontier.
	frontier time.Time
	pages    pages
	fetching bool
	// sweeping: with --exit-on-last-event, once the live cursor has caught
	// up, the span not yet lag old is read once (the sweep), so that late
	// events visible now are delivered before the exit; swept once done.
	// The sweep leaves the position where it is: the span is read again
	// once lag old, for what becomes visible later.
	sweeping, swept bool
	fails           int
	wait            timer.Timer
	tr              inflight.Tracker[trailPos]

	late           uint64 // late events settled since the first run
	pos            trailPos
	ackedSeq       uint64
	saving, resave bool
	prune          bool // the next save forgets seen events before pos.Start
}

// trailPos is the trailing cursor's position after an item; id and t name
// a late event it handed out, recorded as seen once its checkpoint passes.
type trailPos struct {
	persistence.TrailPosition
	id string
	t  time.Time
}

// startTrail loads the trailing cursor's state; the live position is
// loaded already.
func (p *Poller) startTrail() {
	if p.Lag <= 0 {
		p.late = nil
		return
	}
	seen, err := p.Store.Seen()
	if err != nil {
		panic(fmt.Errorf("load the events the trailing cursor has seen: %w", err))
	}
	pos, ok, err := p.Store.Trail()
	if err != nil {
		panic(fmt.Errorf("load the trailing cursor's position: %w", err))
	}
	frontier := later(p.winStart, p.lastTime)
	if !ok {
		pos = persistence.TrailPosition{Start: frontier, End: frontier}
	}
	t := &trail{seen: seen, sets: map[int64][]persistence.SeenDigest{}, dirty: map[int64]bool{}, start: pos.Start, end: pos.End, key: pos.Cursor, skip: pos.Offset, durable: pos.Start,
		frontier: later(frontier, pos.Start), wait: timer.Timer{Clock: p.Clock}, late: pos.Late}
	for d, at := range seen {
		t.sets[at.Unix()] = append(t.sets[at.Unix()], d)
	}
	t.pos = trailPos{TrailPosition: pos}
	t.pages = newPages(p.Batch, p.GrowTo)
	t.pages.resume(t.skip)
	t.tr = inflight.Tracker[trailPos]{URL: p.URL, Stream: p.tr.Stream, Pool: p.Pool, Taps: p.Taps,
		Filter: p.Filter, Metrics: p.Metrics, Encode: p.Encode, Window: p.Window}
	t.tr.Reset(p.epoch + 1) // apart from the live cursor's answers
	p.late = t
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// handedOut reports whether the event was handed out already; else it is
// recorded as handed out now (when the trailing cursor may meet it).
func (t *trail) handedOut(id string, at time.Time) bool {
	d := persistence.DigestOf(id)
	if _, ok := t.seen[d]; ok {
		return true
	}
	if !at.Before(t.start) {
		t.seen[d] = at
	}
	return false
}

// passed records that a checkpoint passed the event handed out: it is
// stored as seen with the next save.
func (t *trail) passed(at time.Time, id string) {
	s := at.Unix()
	t.sets[s] = append(t.sets[s], persistence.DigestOf(id))
	t.dirty[s] = true
}

// flushSeen are the writes of the sets changed since the last save.
func (t *trail) flushSeen() []kv.Write {
	writes := make([]kv.Write, 0, len(t.dirty))
	for s := range t.dirty {
		writes = append(writes, persistence.SeenSetWrite(time.Unix(s, 0), t.sets[s]))
		delete(t.dirty, s)
	}
	return writes
}

// liveRead moves the frontier after a page of the live cursor, issued at
// r; between spans, the trailing cursor skips what needs no second read.
func (t *trail) liveRead(frontier, r time.Time, lag time.Duration) {
	caughtUp := !t.start.Before(t.frontier) && t.start.Equal(t.end) && !t.fetching && t.tr.Buffered() == 0
	t.frontier = later(t.frontier, frontier)
	if !caughtUp {
		return
	}
	skipTo := t.frontier
	if safe := r.Add(-lag); safe.Before(skipTo) {
		skipTo = safe
	}
	if skipTo.After(t.start) {
		t.start, t.end = skipTo, skipTo
		t.forget()
		t.tr.Mark(trailPos{TrailPosition: persistence.TrailPosition{Start: skipTo, End: skipTo}})
	}
}

// forget drops the seen events before start from memory, and the sets of
// the seconds wholly before it.
func (t *trail) forget() {
	for d, at := range t.seen {
		if at.Before(t.start) {
			delete(t.seen, d)
		}
	}
	for s := range t.sets {
		if !time.Unix(s+1, 0).After(t.start) {
			delete(t.sets, s)
			delete(t.dirty, s)
		}
	}
}

// maybeFetchTrail starts the trailing cursor's next page request, or waits
// until a span is lag old; with --exit-on-last-event, once the live cursor
// has caught up, it sweeps what is not lag old yet.
func (p *Poller) maybeFetchTrail(ctx actor.Context) {
	t := p.late
	if t == nil || t.fetching || p.draining || p.finished || t.tr.Buffered() >= t.pages.size {
		return
	}
	if t.wait.Armed() {
		if !p.sweepDue() {
			return
		}
		t.wait.Stop()
	}
	if !t.end.After(t.start) {
		end, ok := p.nextSpan(ctx)
		if !ok {
			return
		}
		t.end, t.key, t.skip = end, "", 0
	}
	t.fetching = true
	p.Metrics.TeleportSearches.WithLabelValues("trail").Inc()
	p.fetches <- fetchReq{trail: true, winStart: t.start, to: t.end, key: t.key, skip: t.skip, limit: t.pages.size}
}

// nextSpan is the end of the next span to read: the sweep's once it is
// due, else a span lag old, if there is one; without, it waits.
func (p *Poller) nextSpan(ctx actor.Context) (time.Time, bool) {
	t := p.late
	if p.sweepDue() {
		if !t.frontier.After(t.start) {
			t.swept = true
			return time.Time{}, false
		}
		t.sweeping = true
		return t.frontier, true
	}
	end := t.frontier
	if ripe := p.Clock.Now().Add(-p.Lag); ripe.Before(end) {
		end = ripe
	}
	if limit := t.start.Add(p.WindowSize); limit.Before(end) {
		end = limit
	}
	if !end.After(t.start) {
		t.wait.After(ctx, p.Timeout, &trailTick{})
		return time.Time{}, false
	}
	return end, true
}

// sweepDue: the live cursor has caught up (--exit-on-last-event) and the
// trailing cursor is between spans with its sweep not done.
func (p *Poller) sweepDue() bool {
	t := p.late
	return p.ExitOnLastEvent && p.caughtUp && !t.swept && !t.end.After(t.start)
}

// trailDone reports whether the trailing cursor lets the run finish
// (--exit-on-last-event): it has swept.
func (p *Poller) trailDone() bool { return p.late == nil || p.late.swept }

// trailTick ends a wait of the trailing cursor.
type trailTick struct{}

// onTrailPage hands out the late events of a page of the trailing cursor.
func (p *Poller) onTrailPage(ctx actor.Context, r *pageResult) {
	t := p.late
	t.fetching = false
	p.Metrics.Health.TeleportCall(ctx.Self().Id+"/trail", r.err)
	if r.err != nil {
		p.Metrics.TeleportErrors.WithLabelValues("SearchUnstructuredEvents", "trail").Inc()
		t.fails++
		delay := retries.Delay(t.fails)
		p.log.Warn().Err(r.err).Int("failures", t.fails).Dur("retry_in", delay).Msg("searching for late audit events failed; retrying")
		t.wait.After(ctx, delay, &trailTick{})
		return
	}
	t.fails = 0
	for i, ev := range r.events {
		if i < r.req.skip {
			continue
		}
		pos := trailPos{TrailPosition: persistence.TrailPosition{Start: r.req.winStart, End: r.req.to, Cursor: r.req.key, Offset: i + 1}}
		if t.sweeping {
			pos.TrailPosition = persistence.TrailPosition{Start: r.req.winStart, End: r.req.winStart}
		}
		at := ev.Time.AsTime()
		if t.handedOut(ev.Id, at) {
			t.tr.Pass(ev, pos)
			continue
		}
		pos.id, pos.t = ev.Id, at
		p.log.Info().Str("event_id", ev.Id).Str("event_type", ev.Type).Time("event_time", at).
			Msg("found an audit event that became visible after later ones; sending it")
		p.Metrics.AuditLateEvents.Inc()
		var body []byte
		if i < len(r.bodies) {
			body = r.bodies[i]
		}
		t.tr.Event(ev, pos, r.fetched, body)
	}
	switch {
	case r.nextKey != "":
		t.key, t.skip = r.nextKey, max(0, r.req.skip-len(r.events))
		t.pages.more()
	case t.sweeping:
		t.pages.edge()
		t.sweeping, t.swept = false, true
		t.end, t.key, t.skip = t.start, "", 0
	default:
		// The span is read: the next one after --timeout, as the live
		// cursor polls, so that the trailing cursor costs about one more
		// search per poll.
		t.start, t.key, t.skip = t.end, "", 0
		t.pages.edge()
		t.forget()
		t.tr.Mark(trailPos{TrailPosition: persistence.TrailPosition{Start: t.end, End: t.end}})
		t.wait.After(ctx, p.Timeout, &trailTick{})
	}
	p.pump(ctx)
}

// pumpTrail hands out the trailing cursor's items and checkpoints it.
func (p *Poller) pumpTrail(ctx actor.Context) {
	t := p.late
	if t == nil {
		return
	}
	if !p.draining {
		t.tr.HandOut(ctx, dryRunOf[trailPos](p))
	}
	last := t.tr.Advance(func(it *inflight.Item[trailPos]) {
		if it.Pos.id != "" {
			t.late++
			t.passed(it.Pos.t, it.Pos.id)
		}
		if it.Pos.Start.Equal(it.Pos.End) {
			t.prune = true
		}
	})
	if last != nil {
		t.ackedSeq, t.pos = last.Seq, last.Pos
		if t.saving {
			t.resave = true
		} else {
			p.saveTrail(ctx)
		}
	}
	p.maybeFetchTrail(ctx)
}

// saveTrail asks the checkpoint writer to store the trailing cursor's
// position, with the late events it passed, and, past a span, to forget
// the seen events before it.
func (p *Poller) saveTrail(ctx actor.Context) {
	t := p.late
	t.saving = true
	pos := t.pos.TrailPosition
	pos.Late = t.late
	t.savingStart = pos.Start
	writes := append([]kv.Write{persistence.TrailWrite(pos)}, t.flushSeen()...)
	if t.prune {
		t.prune = false
		pruned, err := p.Store.SeenPruneWrites(pos.Start)
		if err != nil {
			panic(fmt.Errorf("list the seen events to forget: %w", err))
		}
		writes = append(writes, pruned...)
	}
	ctx.Send(p.Checkpoint, &messages.Save{Key: TrailKey, Epoch: p.epoch, Seq: t.ackedSeq, Writes: writes, ReplyTo: ctx.Self()})
}

func (p *Poller) onTrailSaved(ctx actor.Context, m *messages.Saved) {
	t := p.late
	t.saving = false
	t.durable = t.savingStart
	t.tr.Persisted(m.Seq)
	if t.resave {
		t.resave = false
		p.saveTrail(ctx)
	}
	p.pump(ctx)
}

// trailSettled reports whether the trailing cursor has nothing in flight.
func (p *Poller) trailSettled() bool {
	return p.late == nil || (p.late.tr.Settled() && !p.late.saving)
}
