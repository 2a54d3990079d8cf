// Package pool delivers events to Fluentd: a pool actor queues deliveries
// by URL and hands them, a batch at a time, to at most
// --fluentd-max-connections connection actors, each of which sends with its
// own fluentd.Sender and retries until the batch is either acknowledged or
// rejected for good (its events dead-lettered).
package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/fluentd"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Name is the pool's name under the root.
const Name = "fluentd"

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
	Transport   fluentd.Transport
	DeadLetters *persistence.DeadLetters
	// MaxConnections is the number of connection actors, hence of
	// concurrent POSTs.
	MaxConnections int
	// Batch is the most events sent in one POST, as a JSON array, to one
	// URL (--fluentd-batch); 1 or less sends each event on its own.
	Batch int
	// Linger is how long a partial batch waits for more events while a
	// connection is free (DefaultLinger when zero). A full batch, or any
	// batch once the linger has passed, goes at once.
	Linger time.Duration
	// MaxBatchBytes caps the body of a batch (DefaultMaxBatchBytes when
	// zero).
	MaxBatchBytes int
	// Ctx aborts sends in progress; it is cancelled when a shutdown runs out
	// of time.
	Ctx context.Context
	Log zerolog.Logger
	// Kit makes the connections' props.
	Kit supervisor.Kit
	// Metrics may be nil (tests); Props then makes private ones.
	Metrics *metrics.Metrics
}

// Capacity is how many events a pool of maxConns connections carries at
// once with batches of up to batch events: what the requesters' in-flight
// windows are sized on.
func Capacity(maxConns, batch int) int {
	return max(maxConns, 1) * max(batch, 1)
}

// Depth is how many jobs a connection holds at once: it starts the next
// POST as soon as an answer comes, without waiting for the pool, so the
// connection does not idle for a round trip between actors.
const Depth = 2

// job is what the pool hands a connection: deliveries to one URL, POSTed
// together as a JSON array when there are several.
type job struct {
	id    uint64
	items []*messages.Delivery
}

// connIdle tells the pool that a connection finished job id and can take
// another; started says instead that the connection (re)started, which
// finished nothing it was given before.
type connIdle struct {
	pid     *actor.PID
	job     uint64
	started bool
}

// connSettled tells the pool that a connection settled one delivery of a
// job while sending the job's events one at a time (to isolate a rejected
// one): a restart of the connection then hands out only the rest again.
type connSettled struct {
	pid *actor.PID
	job uint64
	d   *messages.Delivery
}

// connState is the pool's view of a connection: its free job slots and the
// deliveries of the jobs it holds, by job id.
type connState struct {
	pid   *actor.PID
	free  int
	held  map[uint64][]*messages.Delivery
	order []uint64 // job ids in the order handed out
}

// lingerTick wakes the pool when the oldest partial batch has waited long
// enough.
type lingerTick struct{ epoch uint64 }

// queued is a delivery waiting in the pool; order is its arrival number
// (0 for deliveries handed out before and queued again, which go first).
type queued struct {
	d     *messages.Delivery
	order uint64
	at    time.Time
}

// group is the queue of one URL.
type group struct {
	url   string
	items []queued
}

// Pool queues deliveries by URL and hands them, a batch at a time, to idle
// connection actors. The queue is bounded by the requesters' own in-flight
// windows.
type Pool struct {
	deps  Deps
	epoch uint64
	// conns by PID id, and in spawn order for a stable scan. What a
	// connection holds stays here until it is settled: a connection that
	// fails, even on the message that handed it a job, loses nothing.
	conns  map[string]*connState
	list   []*connState
	jobID  uint64
	groups map[string]*group
	// urls lists the URLs with queued deliveries, for a stable scan.
	urls   []string
	queued int
	order  uint64
	// timer wakes the pool at timerAt, for a partial batch.
	timer   *time.Timer
	timerAt time.Time
	// stopping is set once the pool itself stops or restarts, when its
	// connections terminating is expected rather than a failure.
	stopping bool
	starts   *atomic.Int64 // shared by the incarnations of one Props
}

// Props returns the pool's props.
func Props(deps Deps, opts ...actor.PropsOption) *actor.Props {
	if deps.Metrics == nil {
		deps.Metrics = metrics.New()
	}
	deps.Batch = max(deps.Batch, 1)
	if deps.Linger <= 0 {
		deps.Linger = DefaultLinger
	}
	if deps.MaxBatchBytes <= 0 {
		deps.MaxBatchBytes = DefaultMaxBatchBytes
	}
	// Incarnations of this pool: only a restart loses deliveries. On the
	// first start nothing is lost, and announcing it would make requesters
	// that subscribed before the pool ran its Started send everything they
	// had in flight twice.
	starts := new(atomic.Int64)
	return actor.PropsFromProducer(func() actor.Actor {
		return &Pool{deps: deps, conns: map[string]*connState{}, groups: map[string]*group{}, starts: starts}
	}, opts...)
}

// Receive implements actor.Actor.
func (p *Pool) Receive(ctx actor.Context) {
	faults.Inject("pool", ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.epoch = rand.Uint64()
		p.deps.Metrics.PoolCapacity.Set(float64(p.deps.MaxConnections))
		props := connProps(p.deps)
		for i := range p.deps.MaxConnections {
			// Each connection reports itself idle when it starts.
			if _, err := ctx.SpawnNamed(props, fmt.Sprintf("connection-%d", i)); err != nil {
				panic(fmt.Errorf("spawn connection %d: %w", i, err))
			}
		}
		if p.starts.Add(1) > 1 {
			// Deliveries queued by the previous incarnation died with it.
			ctx.ActorSystem().EventStream.Publish(&messages.PoolStarted{PID: ctx.Self()})
		}
	case *messages.Delivery:
		p.order++
		p.enqueue(queued{d: m, order: p.order, at: time.Now()}, false)
		p.dispatch(ctx)
	case *connIdle:
		c := p.conns[m.pid.Id]
		switch {
		case c == nil && !m.started:
			return // from a connection that stopped for good
		case c == nil:
			c = &connState{pid: m.pid, free: Depth, held: map[uint64][]*messages.Delivery{}}
			p.conns[m.pid.Id] = c
			p.list = append(p.list, c)
		case m.started:
			// Restarted: whatever it held is handed out again.
			p.release(c)
		default:
			if _, ok := c.held[m.job]; ok {
				delete(c.held, m.job)
				c.order = slices.DeleteFunc(c.order, func(id uint64) bool { return id == m.job })
				c.free++
			}
		}
		p.dispatch(ctx)
	case *connSettled:
		if c := p.conns[m.pid.Id]; c != nil {
			held := c.held[m.job]
			if i := slices.Index(held, m.d); i >= 0 {
				// A copy: the connection reads the slice it was given.
				c.held[m.job] = slices.Concat(held[:i], held[i+1:])
			}
		}
	case *lingerTick:
		if m.epoch == p.epoch {
			p.timer = nil
			p.dispatch(ctx)
		}
	case *actor.Stopping, *actor.Restarting:
		p.stopping = true
		p.epoch++
		if p.timer != nil {
			p.timer.Stop()
			p.timer = nil
		}
	case *actor.Terminated:
		// A connection stopped for good (restart budget spent): the root
		// sees the pool stop soon after, since a pool without connections
		// cannot make progress.
		if c := p.conns[m.Who.Id]; c != nil {
			delete(p.conns, m.Who.Id)
			p.list = slices.DeleteFunc(p.list, func(x *connState) bool { return x == c })
			if !p.stopping {
				p.release(c)
				c.free = 0
				p.dispatch(ctx)
			}
		}
		if !p.stopping && len(ctx.Children()) == 0 {
			panic(fmt.Errorf("all fluentd connections stopped"))
		}
	}
}

// enqueue adds a delivery to its URL's queue, at the front if it was handed
// out before.
func (p *Pool) enqueue(q queued, front bool) {
	g := p.groups[q.d.URL]
	if g == nil {
		g = &group{url: q.d.URL}
		p.groups[q.d.URL] = g
		p.urls = append(p.urls, q.d.URL)
	}
	if front {
		g.items = append([]queued{q}, g.items...)
	} else {
		g.items = append(g.items, q)
	}
	p.queued++
}

// release puts back every delivery a connection holds, first in line and in
// their order, and frees its slots.
func (p *Pool) release(c *connState) {
	for j := len(c.order) - 1; j >= 0; j-- {
		ds := c.held[c.order[j]]
		for i := len(ds) - 1; i >= 0; i-- {
			p.enqueue(queued{d: ds[i]}, true)
		}
	}
	clear(c.held)
	c.order = c.order[:0]
	c.free = Depth
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

// dispatch hands batches to idle connections: the ready group whose oldest
// delivery came first goes first. A group is ready when it has a full
// batch or its oldest delivery has lingered long enough; otherwise the
// pool sleeps until the first group will be.
func (p *Pool) dispatch(ctx actor.Context) {
	var now time.Time
	for p.queued > 0 {
		conn := p.freest()
		if conn == nil {
			return
		}
		if now.IsZero() && p.deps.Batch > 1 {
			now = time.Now()
		}
		var best *group
		var wake time.Time
		for _, url := range p.urls {
			g := p.groups[url]
			head := g.items[0]
			if p.deps.Batch > 1 && len(g.items) < p.deps.Batch {
				if due := head.at.Add(p.deps.Linger); due.After(now) {
					if wake.IsZero() || due.Before(wake) {
						wake = due
					}
					continue
				}
			}
			if best == nil || head.order < best.items[0].order {
				best = g
			}
		}
		if best == nil {
			p.wakeAt(ctx, wake, now)
			return
		}
		items := p.take(best)
		p.jobID++
		conn.held[p.jobID] = items
		conn.order = append(conn.order, p.jobID)
		conn.free--
		ctx.Send(conn.pid, &job{id: p.jobID, items: items})
	}
}

// take removes the next batch from g: up to Batch deliveries whose bodies
// fit in MaxBatchBytes (at least one, whatever its size).
func (p *Pool) take(g *group) []*messages.Delivery {
	n, size := 0, 2 // the brackets
	for n < len(g.items) && n < p.deps.Batch {
		size += len(g.items[n].d.Body) + 1
		if n > 0 && size > p.deps.MaxBatchBytes {
			break
		}
		n++
	}
	items := make([]*messages.Delivery, n)
	for i := range n {
		items[i] = g.items[i].d
		g.items[i] = queued{}
	}
	g.items = g.items[n:]
	p.queued -= n
	if len(g.items) == 0 {
		delete(p.groups, g.url)
		p.urls = slices.DeleteFunc(p.urls, func(u string) bool { return u == g.url })
	}
	return items
}

// wakeAt arms the linger timer for t unless it is armed for earlier.
func (p *Pool) wakeAt(ctx actor.Context, t, now time.Time) {
	if t.IsZero() || (p.timer != nil && !p.timerAt.After(t)) {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	self, system, epoch := ctx.Self(), ctx.ActorSystem(), p.epoch
	p.timerAt = t
	p.timer = time.AfterFunc(t.Sub(now), func() { system.Root.Send(self, &lingerTick{epoch: epoch}) })
}

// retryTick wakes a connection for the next attempt of a job.
type retryTick struct{ epoch, job uint64 }

// postReq asks a connection's sender goroutine for one POST; postDone is
// its answer.
type postReq struct {
	epoch, job uint64
	url        string
	events     [][]byte
}

type postDone struct {
	epoch, job uint64
	res        fluentd.Result
	took       time.Duration
}

// sendJob is a job a connection holds.
type sendJob struct {
	id uint64
	// items are the job's deliveries not yet settled, in order.
	items []*messages.Delivery
	// single is set once Fluentd refused the batch for good: its events
	// are then sent one at a time, so that only the bad ones are
	// dead-lettered.
	single   bool
	events   [][]byte // of the current attempt, kept across its retries
	attempts int
	timer    *time.Timer
}

// sending is what the job's current attempt sends.
func (j *sendJob) sending() []*messages.Delivery {
	if j.single {
		return j.items[:1]
	}
	return j.items
}

// conn is one connection actor. Its POSTs run one after the other on a
// goroutine of its own (whose stack stays grown, where a mailbox goroutine
// would grow one for every request), so the actor answers a stop at once.
// It holds up to Depth jobs: the next one's POST is queued to the sender
// while the current one is on the wire. The waits between retries are
// timers.
type conn struct {
	deps  Deps
	log   zerolog.Logger
	epoch uint64
	posts chan<- postReq
	jobs  map[uint64]*sendJob
}

func connProps(deps Deps) *actor.Props {
	return deps.Kit.Props("connection", func() actor.Actor {
		return &conn{deps: deps, epoch: rand.Uint64(), jobs: map[uint64]*sendJob{}}
	})
}

func (c *conn) Receive(ctx actor.Context) {
	faults.Inject("connection", ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.log = c.deps.Log.With().Str("actor", ctx.Self().Id).Logger()
		// At most one attempt of each job is queued: Depth never blocks.
		posts := make(chan postReq, Depth)
		c.posts = posts
		go sender(c.deps, posts, ctx.Self(), ctx.ActorSystem())
		ctx.Send(ctx.Parent(), &connIdle{pid: ctx.Self(), started: true})
	case *job:
		j := &sendJob{id: m.id, items: m.items}
		c.jobs[m.id] = j
		c.deps.Metrics.SendsInFlight.Inc()
		c.attempt(j)
	case *retryTick:
		if j := c.jobs[m.job]; m.epoch == c.epoch && j != nil {
			c.attempt(j)
		}
	case *postDone:
		if j := c.jobs[m.job]; m.epoch == c.epoch && j != nil {
			c.done(ctx, j, m.res, m.took)
		}
	case *actor.Restarting, *actor.Stopping:
		c.epoch++
		if c.posts != nil {
			close(c.posts) // the sender ends after the POSTs queued to it
			c.posts = nil
		}
		for id, j := range c.jobs {
			if j.timer != nil {
				j.timer.Stop()
			}
			// The pool still holds the deliveries and hands them out
			// again when this connection restarts (or stops for good).
			c.deps.Metrics.SendsInFlight.Dec()
			delete(c.jobs, id)
		}
	}
}

// sender makes the sends of one connection actor incarnation, in order,
// until posts is closed.
func sender(deps Deps, posts <-chan postReq, self *actor.PID, system *actor.ActorSystem) {
	s := deps.Transport.NewSender()
	defer s.Close()
	for p := range posts {
		if deps.Ctx.Err() != nil {
			system.Root.Send(self, &postDone{epoch: p.epoch, job: p.job, res: fluentd.Result{Class: fluentd.Retry, Reason: deps.Ctx.Err().Error()}})
			continue
		}
		began := time.Now()
		res := s.Send(deps.Ctx, p.url, p.events)
		system.Root.Send(self, &postDone{epoch: p.epoch, job: p.job, res: res, took: time.Since(began)})
	}
}

// bodies are the events of ds, in order.
func bodies(ds []*messages.Delivery) [][]byte {
	events := make([][]byte, len(ds))
	for i, d := range ds {
		events[i] = d.Body
	}
	return events
}

// attempt queues the job's next POST to the sender.
func (c *conn) attempt(j *sendJob) {
	send := j.sending()
	if j.events == nil {
		j.events = bodies(send)
	}
	j.attempts++
	c.posts <- postReq{epoch: c.epoch, job: j.id, url: send[0].URL, events: j.events}
}

// done judges the answer to an attempt of j.
func (c *conn) done(ctx actor.Context, j *sendJob, res fluentd.Result, took time.Duration) {
	send := j.sending()
	url := send[0].URL
	m := c.deps.Metrics
	m.SendDuration.Observe(took.Seconds())
	m.BatchEvents.Observe(float64(len(send)))
	m.FluentdResponses.WithLabelValues(metrics.StatusClass(res.Status)).Inc()
	switch res.Class {
	case fluentd.Success:
		m.Health.FluentdSend(nil)
		acked := time.Now()
		for _, d := range send {
			m.EventsSent.WithLabelValues(d.Stream).Inc()
			if !d.Fetched.IsZero() {
				m.FetchToAck.WithLabelValues(d.Stream).Observe(acked.Sub(d.Fetched).Seconds())
			}
		}
		c.settle(ctx, j, len(send), messages.Sent, res.Status)
		return
	case fluentd.Permanent:
		if len(send) > 1 {
			// One bad event, or a body too big: find out event by event.
			m.Health.FluentdSend(nil)
			c.log.Warn().Str("url", url).Int("status", res.Status).Str("reason", res.Reason).Int("events", len(send)).
				Msg("fluentd rejected a batch for good; sending its events one at a time")
			j.single, j.events, j.attempts = true, nil, 0
			c.attempt(j)
			return
		}
		d := send[0]
		err := c.deps.DeadLetters.Append(persistence.DeadLetter{
			Time: time.Now().UTC(), URL: url, Status: res.Status, Reason: res.Reason,
			EventID: d.EventID, Type: d.Type, Event: d.Body,
		})
		if err == nil {
			m.Health.FluentdSend(nil)
			m.EventsDeadLettered.WithLabelValues(d.Stream).Inc()
			c.log.Error().Str("url", url).Int("status", res.Status).Str("reason", res.Reason).
				Str("event_id", d.EventID).Str("event_type", d.Type).Str("file", c.deps.DeadLetters.Path()).
				Msg("fluentd rejected the event for good; written to the dead-letter file")
			c.settle(ctx, j, 1, messages.DeadLettered, res.Status)
			return
		}
		// Not durable yet: keep the event and try again.
		res.Reason = fmt.Sprintf("%s; dead-letter write failed: %v", res.Reason, err)
	}
	if c.deps.Ctx.Err() != nil {
		return // shutting down: the events stay unacknowledged and are resent on start
	}
	for _, d := range send {
		m.EventsRetried.WithLabelValues(d.Stream).Inc()
	}
	m.Health.FluentdSend(errors.New(res.Reason))
	delay := fluentd.RetryDelay(j.attempts, res.RetryAfter)
	ev := c.log.Warn()
	if j.attempts >= 3 {
		ev = c.log.Error()
	}
	ev.Str("url", url).Int("status", res.Status).Str("reason", res.Reason).Int("attempt", j.attempts).
		Int("events", len(send)).Dur("retry_in", delay).Msg("fluentd send failed; retrying")
	self, system, epoch, id := ctx.Self(), ctx.ActorSystem(), c.epoch, j.id
	j.timer = time.AfterFunc(delay, func() { system.Root.Send(self, &retryTick{epoch: epoch, job: id}) })
}

// settle answers the first n deliveries of j and moves on: to the next
// event of a batch being sent one at a time, or frees the job's slot.
func (c *conn) settle(ctx actor.Context, j *sendJob, n int, o messages.Outcome, status int) {
	for _, d := range j.items[:n] {
		ctx.Send(d.ReplyTo, &messages.Delivered{Epoch: d.Epoch, Seq: d.Seq, Outcome: o, Status: status, Attempts: j.attempts})
	}
	if n < len(j.items) {
		for _, d := range j.items[:n] {
			ctx.Send(ctx.Parent(), &connSettled{pid: ctx.Self(), job: j.id, d: d})
		}
		j.items, j.events, j.attempts = j.items[n:], nil, 0
		c.attempt(j)
		return
	}
	delete(c.jobs, j.id)
	c.deps.Metrics.SendsInFlight.Dec()
	ctx.Send(ctx.Parent(), &connIdle{pid: ctx.Self(), job: j.id})
}
