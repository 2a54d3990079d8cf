// Package inflighttest runs a reader of audit events (the poller, the export
// day-walker) under a root actor with a real checkpoint writer, a fake pool
// and an optional fake tap, for the readers' tests; its Pool serves any test
// that needs a pool that answers (the session players' too).
package inflighttest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/actors/checkpoint"
	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/root"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Pool acknowledges deliveries, except that it stops answering after Answer
// of them (never when negative), to leave events in flight as a crash would.
// Read its fields once the tree has stopped, or through Count, Events, AtURL
// and Sent.
type Pool struct {
	mu     sync.Mutex
	Got    map[string]int // deliveries answered, by event ID
	Order  []string       // event IDs in the order answered
	Answer int
	byURL  map[string]map[string]int // deliveries answered, by URL and event ID
}

// NewPool returns a pool that answers everything.
func NewPool() *Pool { return &Pool{Got: map[string]int{}, Answer: -1} }

// Receive implements actor.Actor: a delivery alone, or a reader's
// Deliveries, answered one by one.
func (p *Pool) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Delivery:
		p.deliver(ctx, m)
	case *messages.Deliveries:
		for _, d := range m.Items {
			p.deliver(ctx, d)
		}
	}
}

func (p *Pool) deliver(ctx actor.Context, d *messages.Delivery) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Answer >= 0 && len(p.Order) >= p.Answer {
		return
	}
	p.Got[d.EventID]++
	p.Order = append(p.Order, d.EventID)
	if p.byURL == nil {
		p.byURL = map[string]map[string]int{}
	}
	if p.byURL[d.URL] == nil {
		p.byURL[d.URL] = map[string]int{}
	}
	p.byURL[d.URL][d.EventID]++
	ctx.Send(d.ReplyTo, &messages.Delivered{Epoch: d.Epoch, Seq: d.Seq})
}

// Count is how many times the event was answered, while the tree runs.
func (p *Pool) Count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Got[id]
}

// Events is how many different event IDs were answered, while the tree runs.
func (p *Pool) Events() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.Got)
}

// AtURL is how many different events were answered that were sent to url,
// and how many of those answers were for an event answered before.
func (p *Pool) AtURL(url string) (events, dups int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.byURL[url] {
		events++
		dups += n - 1
	}
	return events, dups
}

// Sent is how many different events were answered over all URLs: an event
// sent to two URLs counts twice.
func (p *Pool) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, ids := range p.byURL {
		n += len(ids)
	}
	return n
}

// Tap records the events it observes and announces itself with TapStarted
// as the real taps do. It panics once on its first observation when Crash is
// set (a supervised restart), and never answers events of type Mute.
type Tap struct {
	mu      sync.Mutex
	Seen    map[string]int
	Crash   bool
	crashed bool
	Mute    string
}

// NewTap returns a tap that answers everything.
func NewTap() *Tap { return &Tap{Seen: map[string]int{}} }

// Wants is what the tap observes: session.upload events.
func Wants(ev *auditlogpb.EventUnstructured) bool { return ev.Type == "session.upload" }

// Receive implements actor.Actor.
func (f *Tap) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.ActorSystem().EventStream.Publish(&messages.TapStarted{PID: ctx.Self()})
	case *messages.Observe:
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.Crash && !f.crashed {
			f.crashed = true
			panic("tap failure")
		}
		f.Seen[m.Event.Id]++
		if m.Event.Type != f.Mute {
			ctx.Send(m.ReplyTo, &messages.Observed{Epoch: m.Epoch, Seq: m.Seq, Tap: ctx.Self()})
		}
	}
}

// Event is an audit event of the given ID, type and time as the search
// and export APIs return it, with the same in its JSON.
func Event(id, typ string, t time.Time) *auditlogpb.EventUnstructured {
	st, _ := structpb.NewStruct(map[string]any{"uid": id, "event": typ, "time": t.Format(time.RFC3339Nano)})
	return &auditlogpb.EventUnstructured{Id: id, Type: typ, Time: timestamppb.New(t), Unstructured: st}
}

// Tree is a root with the checkpoint writer, Pool, Tap (when set) and the
// reader under test.
type Tree struct {
	Store *persistence.Store
	Pool  *Pool
	Tap   *Tap
	// Name is the reader's child name; DrainTimeout the root's.
	Name         string
	DrainTimeout time.Duration
	// Reader builds the reader with the checkpoint writer's and the pool's
	// PIDs, and the taps (Tap with Wants, when set).
	Reader func(ckpt, pool *actor.PID, taps []inflight.Tap) actor.Actor
	// Kit makes the reader's props (protoactor's defaults when zero).
	Kit supervisor.Kit
}

// Run runs the tree until the reader reports CaughtUp (finished is true),
// until returns true or the timeout passes, stops it and returns the run's
// error.
func (tr Tree) Run(t testing.TB, timeout time.Duration, until func() bool) (finished bool, err error) {
	t.Helper()
	system := actor.NewActorSystem()
	defer system.Shutdown()
	ckpt, pool := root.PID(system, checkpoint.Name), root.PID(system, "pool")
	children := []root.Child{
		{Name: checkpoint.Name, Props: checkpoint.Props(checkpoint.Deps{Store: tr.Store})},
		{Name: "pool", Props: actor.PropsFromProducer(func() actor.Actor { return tr.Pool })},
	}
	var taps []inflight.Tap
	if tr.Tap != nil {
		children = append(children, root.Child{Name: "tap", Props: actor.PropsFromProducer(func() actor.Actor { return tr.Tap })})
		taps = []inflight.Tap{{PID: root.PID(system, "tap"), Wants: Wants}}
	}
	children = append(children, root.Child{Name: tr.Name, Drain: true, Finishes: true, Props: tr.Kit.Props(tr.Name, func() actor.Actor {
		return tr.Reader(ckpt, pool, taps)
	})})
	tree, err := root.Start(system, root.Spec{Children: children, Log: zerolog.Nop(), DrainTimeout: tr.DrainTimeout,
		Strategy: supervisor.New(supervisor.Policy{InitialDelay: time.Millisecond}, zerolog.Nop())})
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if until != nil {
		go func() {
			defer cancel()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for !until() {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	return tree.Wait(ctx.Done(), 10*time.Second)
}
