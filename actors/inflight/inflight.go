// Package inflight keeps the events a reader (the search poller, an export
// chunk reader, a session player) has read and not yet checkpointed. Each
// event waits for the pool's Delivered, when it is sent, and for the
// Observed of every tap that wants it; the reader's watermark moves over
// the contiguous prefix of settled items only, so a crash resends at most
// what is in flight. It also decides, with the reader's Filter, which
// events are sent at all.
package inflight

import (
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
)

// Tap is an actor that observes some audit events (the session manager, the
// lock policy). At most 64 per reader: each has a bit in Item.Taps.
type Tap struct {
	PID   *actor.PID
	Wants func(*auditlogpb.EventUnstructured) bool
}

// Filter says which events are sent to Fluentd: those of the types in Only
// (every type when Only is empty) and not in Skip. Taps see the events they
// want whatever it says.
type Filter struct {
	Only map[string]bool
	Skip map[string]bool
}

// Sends is true for the events of typ that go to Fluentd.
func (f Filter) Sends(typ string) bool {
	return !f.Skip[typ] && (len(f.Only) == 0 || f.Only[typ])
}

// Types lists Only, sorted: what to ask Teleport's search for (nil: every
// type).
func (f Filter) Types() []string {
	var out []string
	for t := range f.Only {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Encode makes the body the pool sends of an event: eventjson.Event for
// Fluentd's in_http, eventmsgpack.Entry for its in_forward (the daemon
// picks it for the reader's URL). Nil is eventjson.Event.
type Encode func(*auditlogpb.EventUnstructured) []byte

// Or is e, or eventjson.Event when e is nil.
func (e Encode) Or() Encode {
	if e == nil {
		return eventjson.Event
	}
	return e
}

// Item is one event, or a marker without one, in read order. Pos is where
// the reader resumes once the item and everything before it are settled.
type Item[P any] struct {
	Seq uint64
	Pos P
	Ev  *auditlogpb.EventUnstructured // nil for markers
	// Body is the event as it is sent (Encode), set when it goes to Fluentd.
	Body    []byte
	Fetched time.Time // when the event arrived from Teleport
	// Sending is set while the pool has not settled the event; Taps has a
	// bit for each tap that has not answered Observed.
	Sending bool
	Taps    uint64
}

// Settled is true once nothing is owed for the item.
func (it *Item[P]) Settled() bool { return !it.Sending && it.Taps == 0 }

// Tracker is one reader's items between reading and checkpointing. It is
// used from the reader actor only.
type Tracker[P any] struct {
	Epoch   messages.Epoch // of the reader's incarnation: answers to older ones are ignored
	URL     string         // where events go
	Stream  string         // metrics label: metrics.Audit or metrics.Session
	Pool    *actor.PID
	Taps    []Tap
	Filter  Filter
	Metrics *metrics.Metrics
	Encode  Encode // the events' bodies, when the reader has not made them
	// Window is the most items handed out and not yet checkpointed.
	Window int

	buffer    []*Item[P] // read, not handed out
	inflight  []*Item[P] // handed out, not yet part of the watermark
	slab      []Item[P]  // items to come, allocated a run at a time
	nextSeq   uint64
	persisted uint64
}

// Reset empties the tracker for a new incarnation of its reader.
func (t *Tracker[P]) Reset(epoch messages.Epoch) {
	t.Epoch, t.buffer, t.inflight, t.nextSeq, t.persisted = epoch, nil, nil, 1, 0
}

// Event queues an event read from Teleport, after which the reader resumes
// at pos. It is sent to Fluentd when the filter lets its type through, as
// body (made here with Encode when nil), and observed by the taps that want it.
func (t *Tracker[P]) Event(ev *auditlogpb.EventUnstructured, pos P, fetched time.Time, body []byte) {
	it := t.newItem()
	*it = Item[P]{Pos: pos, Ev: ev, Fetched: fetched, Taps: t.tapsFor(ev)}
	t.Metrics.EventsFetched.WithLabelValues(t.Stream).Inc()
	if t.Filter.Sends(ev.GetType()) {
		if body == nil {
			body = t.Encode.Or()(ev)
		}
		it.Body, it.Sending = body, true
	} else {
		t.Metrics.EventsSkipped.WithLabelValues(t.Stream, "type").Inc()
	}
	t.buffer = append(t.buffer, it)
}

// slabSize is how many items the tracker allocates at once: one
// allocation per slab rather than per event (a slab is freed once none of
// its items is referenced: at most this many items of memory are kept
// after they settle).
const slabSize = 64

func (t *Tracker[P]) newItem() *Item[P] {
	if len(t.slab) == 0 {
		t.slab = make([]Item[P], slabSize)
	}
	it := &t.slab[0]
	t.slab = t.slab[1:]
	return it
}

// Pass queues an event read from Teleport that is neither sent nor
// observed: one before the reader's start.
func (t *Tracker[P]) Pass(ev *auditlogpb.EventUnstructured, pos P) {
	t.Metrics.EventsFetched.WithLabelValues(t.Stream).Inc()
	t.buffer = append(t.buffer, &Item[P]{Pos: pos, Ev: ev})
}

// Mark queues a position without an event: the end of a search window or
// of a stream. The reader sees it pass in Advance.
func (t *Tracker[P]) Mark(pos P) { t.buffer = append(t.buffer, &Item[P]{Pos: pos}) }

func (t *Tracker[P]) tapsFor(ev *auditlogpb.EventUnstructured) uint64 {
	var bits uint64
	for i, tap := range t.Taps {
		if tap.Wants(ev) {
			bits |= 1 << i
		}
	}
	return bits
}

// Oldest is the time of the oldest event read and not yet settled (handed
// out or not), zero when there is none.
func (t *Tracker[P]) Oldest() time.Time {
	for _, items := range [][]*Item[P]{t.inflight, t.buffer} {
		for _, it := range items {
			if it.Ev != nil && !it.Settled() {
				return it.Ev.GetTime().AsTime()
			}
		}
	}
	return time.Time{}
}

// Buffered is the number of items read and not handed out.
func (t *Tracker[P]) Buffered() int { return len(t.buffer) }

// HandOut moves buffered items into flight while the window allows: each
// goes to the taps that want it and, when it is to be sent, to the pool, or
// to dryRun (non-nil with --dry-run), after which it counts as sent.
func (t *Tracker[P]) HandOut(ctx actor.Context, dryRun func(*Item[P])) {
	var out []*messages.Delivery
	var ds []messages.Delivery // the deliveries of this call, allocated at once
	for len(t.buffer) > 0 && t.nextSeq-1-t.persisted < uint64(t.Window) {
		it := t.buffer[0]
		t.buffer[0] = nil
		t.buffer = t.buffer[1:]
		it.Seq = t.nextSeq
		t.nextSeq++
		t.inflight = append(t.inflight, it)
		t.observe(ctx, it, ^uint64(0))
		switch {
		case !it.Sending:
		case dryRun != nil:
			dryRun(it)
			it.Sending = false
		default:
			if len(ds) == 0 {
				ds = make([]messages.Delivery, min(len(t.buffer)+1, t.Window))
			}
			ds[0] = messages.Delivery{Epoch: t.Epoch, Seq: it.Seq, URL: t.URL, Body: it.Body,
				EventID: it.Ev.Id, Type: it.Ev.Type, Stream: t.Stream, ReplyTo: ctx.Self(), Fetched: it.Fetched}
			out, ds = append(out, &ds[0]), ds[1:]
		}
	}
	if len(out) > 0 {
		ctx.Send(t.Pool, &messages.Deliveries{Items: out}) // one message for what is handed out at once
	}
	if len(t.buffer) == 0 {
		t.buffer = nil
	}
}

// observe sends the item to the taps of mask that still owe an answer.
func (t *Tracker[P]) observe(ctx actor.Context, it *Item[P], mask uint64) {
	for i, tap := range t.Taps {
		if it.Taps&mask&(1<<i) != 0 {
			ctx.Send(tap.PID, &messages.Observe{Epoch: t.Epoch, Seq: it.Seq, Event: it.Ev, ReplyTo: ctx.Self()})
		}
	}
}

// item returns the unsettled item of seq, or nil when it is settled already
// (an answer to a resend) or of another incarnation.
func (t *Tracker[P]) item(seq uint64) *Item[P] {
	if len(t.inflight) == 0 || seq < t.inflight[0].Seq {
		return nil
	}
	idx := seq - t.inflight[0].Seq
	if idx >= uint64(len(t.inflight)) {
		return nil
	}
	return t.inflight[idx]
}

// Answered records an answer to what the tracker handed out, the pool's
// *messages.Delivered or *messages.Answers or a tap's *messages.Observed;
// false when it changes nothing (an answer to a resend, to an earlier
// incarnation or another tracker of the reader, or another message).
func (t *Tracker[P]) Answered(msg any) bool {
	switch m := msg.(type) {
	case *messages.Answers:
		changed := false
		for i := range m.Items {
			changed = t.Delivered(&m.Items[i]) || changed
		}
		return changed
	case *messages.Delivered:
		return t.Delivered(m)
	case *messages.Observed:
		return t.Observed(m)
	}
	return false
}

// Delivered records the pool's answer; false when it changes nothing.
func (t *Tracker[P]) Delivered(m *messages.Delivered) bool {
	it := t.item(m.Seq)
	if m.Epoch != t.Epoch || it == nil {
		return false
	}
	it.Sending = false
	return true
}

// Observed records a tap's answer; false when it changes nothing.
func (t *Tracker[P]) Observed(m *messages.Observed) bool {
	it := t.item(m.Seq)
	if m.Epoch != t.Epoch || it == nil {
		return false
	}
	for i, tap := range t.Taps {
		if tap.PID.Equal(m.Tap) {
			it.Taps &^= 1 << i
		}
	}
	return true
}

// TapStarted hands every unanswered item to a tap that restarted.
func (t *Tracker[P]) TapStarted(ctx actor.Context, pid *actor.PID) {
	for i, tap := range t.Taps {
		if tap.PID.Equal(pid) {
			for _, it := range t.inflight {
				t.observe(ctx, it, 1<<i)
			}
		}
	}
}

// Advance takes the settled prefix out of flight and returns its last item
// (nil when none settled); each is passed to each, in order.
func (t *Tracker[P]) Advance(each func(*Item[P])) *Item[P] {
	var last *Item[P]
	for len(t.inflight) > 0 && t.inflight[0].Settled() {
		last = t.inflight[0]
		t.inflight[0] = nil
		t.inflight = t.inflight[1:]
		if each != nil {
			each(last)
		}
	}
	if len(t.inflight) == 0 {
		t.inflight = nil
	}
	return last
}

// Persisted records that the checkpoint up to item seq is on disk: the
// window opens by as much. False when it is not newer than the last.
func (t *Tracker[P]) Persisted(seq uint64) bool {
	if seq <= t.persisted {
		return false
	}
	t.persisted = seq
	return true
}

// Settled is true when every item handed out is settled and checkpointed.
func (t *Tracker[P]) Settled() bool {
	return len(t.inflight) == 0 && t.persisted == t.nextSeq-1
}
