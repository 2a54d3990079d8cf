// Package pool delivers events to Fluentd: a pool actor queues deliveries
// by URL and hands them, a batch at a time, to at most
// --fluentd-max-connections connection actors. Each connection sends with
// its own fluentd.Sender and retries until its batch is either acknowledged
// or rejected for good (its events dead-lettered), then answers each
// delivery's requester with messages.Delivered.
//
// Every Delivery is answered: what a connection held when it failed, and
// what the pool held when it failed, is handed out again (see queue).
package pool

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Name is the pool's name under the root, its kind in the metrics and the
// logs, and its fault kind.
const Name = "pool"

// Defaults for the Deps fields left zero.
const (
	// DefaultLinger is how long a partial batch waits for more events
	// while a connection is free.
	DefaultLinger = 10 * time.Millisecond
	// DefaultMaxBatchBytes caps the body of one batch, well under the body
	// limits of Fluentd (32 MiB) and Fluent Bit (4 MiB). An event bigger
	// than that is sent on its own.
	DefaultMaxBatchBytes = 1 << 20
)

// Deps are what the pool and its connections share.
type Deps struct {
	Transport   wire.Transport
	DeadLetters *persistence.DeadLetters
	// MaxConnections is the number of connection actors, hence of
	// concurrent requests.
	MaxConnections int
	// Batch is the most events sent in one request to one URL
	// (--fluentd-batch); 1 or less sends each event on its own.
	Batch int
	// Linger is how long a partial batch waits for more events while a
	// connection is free (DefaultLinger when zero). A full batch, or any
	// batch once the linger has passed, goes at once.
	Linger time.Duration
	// MaxBatchBytes caps the events of a batch (DefaultMaxBatchBytes when
	// zero).
	MaxBatchBytes int
	// Ctx aborts sends in progress; it is cancelled when a shutdown runs out
	// of time.
	Ctx   context.Context
	Clock clockwork.Clock
	Log   zerolog.Logger
	// Kit makes the connections' props.
	Kit supervisor.Kit
	// Metrics may be nil (tests); Props then makes private ones.
	Metrics *metrics.Metrics

	// refusals logs a receiver's refusals of service, at most one line per
	// refusalLogEvery for all the connections, which all see them.
	refusals *zerolog.Logger
	// breakers are the URLs' circuit breakers for systemic rejections,
	// shared by the pool's incarnations and its connections.
	breakers *breakers
}

// refusalLogEvery rate-limits the error lines about a receiver refusing
// service: with every connection retrying, each attempt would make one.
const refusalLogEvery = 10 * time.Second

// connState is the pool's view of one of its connections: the incarnation
// it reported when it started, and its free job slots.
type connState struct {
	pid   *actor.PID
	epoch messages.Epoch
	free  int
}

// lingerTick wakes the pool when the oldest partial batch has waited long
// enough.
type lingerTick struct{}

// Pool hands queued deliveries to free connections. The queue is bounded
// by the requesters' own in-flight windows.
type Pool struct {
	deps Deps
	q    *queue // shared by the incarnations of one Props
	// conns are this incarnation's connections, by PID id, and in spawn
	// order for a stable scan.
	conns  map[string]*connState
	list   []*connState
	linger timer.Timer
	// stopping is set once the pool itself stops or restarts, when its
	// connections terminating is expected rather than a failure.
	stopping bool
}

// maybeDrained answers a drain (queue.drainTo) once every delivery taken
// back out of the dead-letter file is delivered: the requesters wait for
// the others themselves.
func (p *Pool) maybeDrained(ctx actor.Context) {
	if p.q.drainTo != nil && p.deps.breakers.pendingTakenBack() == 0 {
		ctx.Send(p.q.drainTo, &messages.Drained{})
		p.q.drainTo = nil
	}
}

// Props returns the pool's props.
func Props(deps Deps) *actor.Props {
	if deps.Metrics == nil {
		deps.Metrics = metrics.New()
	}
	if deps.Ctx == nil {
		deps.Ctx = context.Background()
	}
	deps.Clock = timer.Or(deps.Clock)
	deps.Batch = max(deps.Batch, 1)
	if deps.Linger <= 0 {
		deps.Linger = DefaultLinger
	}
	if deps.MaxBatchBytes <= 0 {
		deps.MaxBatchBytes = DefaultMaxBatchBytes
	}
	refusals := deps.Log.Sample(&zerolog.BurstSampler{Burst: 1, Period: refusalLogEvery})
	deps.refusals = &refusals
	deps.breakers = newBreakers()
	q := newQueue()
	return deps.Kit.Props(Name, func() actor.Actor {
		return &Pool{deps: deps, q: q, linger: timer.Timer{Clock: deps.Clock}}
	})
}

// Receive implements actor.Actor.
func (p *Pool) Receive(ctx actor.Context) {
	msg := timer.Message(ctx)
	switch m := msg.(type) {
	case *messages.Delivery:
		// Into the queue that survives restarts before anything else, so
		// that a failure while handling the delivery loses nothing.
		p.take(ctx, []*messages.Delivery{m})
	case *messages.Deliveries:
		p.take(ctx, m.Items)
	case *messages.Drain:
		p.q.drainTo = ctx.Sender() // the same: a restart still answers it
	}
	supervisor.Fault(msg, Name)
	switch m := msg.(type) {
	case *actor.Started:
		p.start(ctx)
	case *messages.Delivery, *messages.Deliveries, *lingerTick:
		p.dispatch(ctx)
	case *connStarted:
		p.connStarted(ctx, m)
	case *connIdle:
		if c := p.conns[m.pid.Id]; c != nil && p.q.finished(m.job, m.pid.Id) {
			c.free++
		}
		p.dispatch(ctx)
		p.maybeDrained(ctx)
	case *connSettled:
		p.q.settled(m.job, m.d)
	case *takenBack:
		// Behind what waits: they were rejected once already, and a probe
		// of one that is bad after all would only delay the others.
		for _, d := range m.items {
			p.q.add(d, p.deps.Clock.Now())
		}
		p.dispatch(ctx)
	case *probed:
		if c := p.conns[m.pid.Id]; c != nil && p.q.rotate(m.job, m.pid.Id, p.deps.Clock.Now()) {
			c.free++
		}
		p.dispatch(ctx)
	case *messages.Drain:
		p.maybeDrained(ctx)
	case *actor.Stopping, *actor.Restarting:
		p.stopping = true
		p.linger.Stop()
	case *actor.Terminated:
		p.connStopped(ctx, m.Who)
	}
}

// take queues a requester's deliveries; but an event taken back is sent
// once (see owed.go): a delivery of it waits for its copy, or is answered
// at once when the copy was accepted already.
func (p *Pool) take(ctx actor.Context, ds []*messages.Delivery) {
	var sent []*messages.Delivery
	for _, d := range ds {
		if joined, ok := p.deps.breakers.join(d); ok {
			sent = append(sent, d)
		} else if !joined {
			p.q.add(d, p.deps.Clock.Now())
		}
	}
	answer(ctx, sent, messages.Sent, 0, 0)
}

// start spawns the connections. After a restart, the jobs that the
// previous incarnation's connections held (they were stopped with it) are
// queued again first.
func (p *Pool) start(ctx actor.Context) {
	if n := p.q.release(func(string) bool { return true }); n > 0 {
		p.deps.Log.Warn().Int("events", n).Msg("pool restarted; sending again what its connections held")
	}
	if !p.q.owedLoaded {
		p.q.owedLoaded = true
		p.loadOwed()
	}
	p.conns, p.list = map[string]*connState{}, nil
	p.deps.Metrics.PoolCapacity.Set(float64(p.deps.MaxConnections))
	props := connProps(p.deps)
	for range p.deps.MaxConnections {
		// A name of its own in each incarnation of the pool, so that
		// nothing meant for an earlier connection reaches this one.
		pid := supervisor.Spawn(ctx, props, connKind)
		// No slot until it reports its start.
		c := &connState{pid: pid}
		p.conns[pid.Id] = c
		p.list = append(p.list, c)
	}
	p.dispatch(ctx)
	p.maybeDrained(ctx)
}

// loadOwed queues again the events whose letters a previous run took back
// (see owed.go).
func (p *Pool) loadOwed() {
	letters, err := p.deps.DeadLetters.TakenBack()
	if err != nil {
		p.deps.Log.Error().Err(err).Str("file", p.deps.DeadLetters.Path()).
			Msg("the letters taken back by an earlier run could not be read; they stay in the file (dead-letters replay sends them)")
		return
	}
	copies := p.deps.breakers.load(letters)
	if len(copies) == 0 {
		return
	}
	now := p.deps.Clock.Now()
	for _, d := range copies {
		p.q.add(d, now)
	}
	p.deps.Log.Warn().Int("events", len(copies)).Str("file", p.deps.DeadLetters.Path()).
		Msg("sending again the events an earlier run took back out of the dead-letter file (a receiver rejected everything); each letter is removed once its event is accepted")
}

// connStarted takes a connection's report that it (re)started: whatever it
// held before finished nothing and is queued again.
func (p *Pool) connStarted(ctx actor.Context, m *connStarted) {
	c := p.conns[m.pid.Id]
	if c == nil {
		return // not one of this incarnation's
	}
	p.q.release(func(conn string) bool { return conn == m.pid.Id })
	c.epoch, c.free = m.epoch, Depth
	p.dispatch(ctx)
}

// connStopped handles a connection that stopped for good (its restart
// budget spent): what it held goes to the others. A pool without
// connections cannot make progress, so it fails, and restarts with new
// ones.
func (p *Pool) connStopped(ctx actor.Context, who *actor.PID) {
	c := p.conns[who.Id]
	if c == nil {
		return
	}
	delete(p.conns, who.Id)
	p.list = slices.DeleteFunc(p.list, func(x *connState) bool { return x == c })
	if p.stopping {
		return
	}
	p.q.release(func(conn string) bool { return conn == who.Id })
	if len(p.conns) == 0 {
		panic(fmt.Errorf("all fluentd connections stopped"))
	}
	p.dispatch(ctx)
}

// freest returns the connection with the most free slots, nil when none
// has one: an idle connection is preferred to one that is sending.
func (p *Pool) freest() *connState {
	var best *connState
	for _, c := range p.list {
		if c.free > 0 && (best == nil || c.free > best.free) {
			best = c
		}
	}
	return best
}

// dispatch hands batches to free connections, the ready group whose oldest
// delivery came first first; when no group is ready, the pool sleeps until
// the first one will be.
func (p *Pool) dispatch(ctx actor.Context) {
	now := p.deps.Clock.Now()
	for p.q.queued > 0 {
		c := p.freest()
		if c == nil {
			return
		}
		g, wake := p.q.next(now, p.deps.Batch, p.deps.Linger, p.holds)
		if g == nil {
			if probe := p.nextProbe(now); !probe.IsZero() && (wake.IsZero() || probe.Before(wake)) {
				wake = probe
			}
			p.wakeAt(ctx, wake, now)
			return
		}
		items := p.q.take(g, p.deps.Batch, p.deps.MaxBatchBytes)
		id := p.q.hold(c.pid.Id, items)
		c.free--
		ctx.Send(c.pid, &job{id: id, epoch: c.epoch, items: items, probe: p.deps.breakers.isOpen(g.url)})
	}
}

// holds reports whether the deliveries to url wait: the breaker of its
// endpoint is open, and a job to the endpoint is out already (a probe) or
// the next probe waits its backoff. Otherwise the next job is the probe.
func (p *Pool) holds(url string) bool {
	open, until := p.deps.breakers.waitsForProbe(url, p.deps.Clock.Now())
	return open && (!until.IsZero() || p.q.holding(url))
}

// nextProbe is the earliest time a probe waits for among the URLs queued,
// zero when none waits.
func (p *Pool) nextProbe(now time.Time) time.Time {
	var first time.Time
	for _, url := range p.q.urls {
		if _, until := p.deps.breakers.waitsForProbe(url, now); !until.IsZero() && (first.IsZero() || until.Before(first)) {
			first = until
		}
	}
	return first
}

// wakeAt arms the linger timer for t unless it is armed for earlier.
func (p *Pool) wakeAt(ctx actor.Context, t, now time.Time) {
	if t.IsZero() || (p.linger.Armed() && !p.linger.Due().After(t)) {
		return
	}
	p.linger.After(ctx, t.Sub(now), &lingerTick{})
}
