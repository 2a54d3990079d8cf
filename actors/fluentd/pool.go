package fluentd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Name is the pool's name under the root.
const Name = "fluentd"

// Deps are what the pool and its connections share.
type Deps struct {
	Client      *Client
	DeadLetters *persistence.DeadLetters
	// MaxConnections is the number of connection actors, hence of
	// concurrent POSTs.
	MaxConnections int
	// Ctx aborts sends in progress; it is cancelled when a shutdown runs out
	// of time.
	Ctx        context.Context
	Log        zerolog.Logger
	Supervisor actor.SupervisorStrategy
	// Metrics may be nil (tests); Props then makes private ones.
	Metrics *metrics.Metrics
}

// connIdle tells the pool that a connection can take another delivery;
// started says it comes from a connection that (re)started, which finished
// nothing it was given before.
type connIdle struct {
	pid     *actor.PID
	started bool
}

// Pool queues deliveries and hands each to an idle connection actor. The
// queue is bounded by the requesters' own in-flight windows.
type Pool struct {
	deps  Deps
	idle  []*actor.PID
	queue []*messages.Delivery
	// held is the delivery each connection holds, by PID id: a connection
	// that fails, even on the message that handed it the delivery, does
	// not lose it.
	held map[string]*messages.Delivery
	// stopping is set once the pool itself stops or restarts, when its
	// connections terminating is expected rather than a failure.
	stopping bool
}

// Props returns the pool's props.
func Props(deps Deps, opts ...actor.PropsOption) *actor.Props {
	if deps.Metrics == nil {
		deps.Metrics = metrics.New()
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &Pool{deps: deps, held: map[string]*messages.Delivery{}}
	}, opts...)
}

// Receive implements actor.Actor.
func (p *Pool) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.deps.Metrics.PoolCapacity.Set(float64(p.deps.MaxConnections))
		props := connProps(p.deps)
		for i := range p.deps.MaxConnections {
			// Each connection reports itself idle when it starts.
			if _, err := ctx.SpawnNamed(props, fmt.Sprintf("connection-%d", i)); err != nil {
				panic(fmt.Errorf("spawn connection %d: %w", i, err))
			}
		}
		// Deliveries queued by a previous incarnation died with it.
		ctx.ActorSystem().EventStream.Publish(&messages.PoolStarted{PID: ctx.Self()})
	case *messages.Delivery:
		p.queue = append(p.queue, m)
		p.dispatch(ctx)
	case *connIdle:
		if d := p.held[m.pid.Id]; d != nil {
			delete(p.held, m.pid.Id)
			if m.started {
				p.queue = append([]*messages.Delivery{d}, p.queue...)
			}
		}
		for _, pid := range p.idle {
			if pid.Equal(m.pid) {
				return // a restarted connection that was idle already
			}
		}
		p.idle = append(p.idle, m.pid)
		p.dispatch(ctx)
	case *actor.Stopping, *actor.Restarting:
		p.stopping = true
	case *actor.Terminated:
		// A connection stopped for good (restart budget spent): the root
		// sees the pool stop soon after, since a pool without connections
		// cannot make progress.
		for i, pid := range p.idle {
			if pid.Equal(m.Who) {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
		if d := p.held[m.Who.Id]; d != nil && !p.stopping {
			delete(p.held, m.Who.Id)
			p.queue = append([]*messages.Delivery{d}, p.queue...)
			p.dispatch(ctx)
		}
		if !p.stopping && len(ctx.Children()) == 0 {
			panic(fmt.Errorf("all fluentd connections stopped"))
		}
	}
}

func (p *Pool) dispatch(ctx actor.Context) {
	for len(p.idle) > 0 && len(p.queue) > 0 {
		conn := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		d := p.queue[0]
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.held[conn.Id] = d
		ctx.Send(conn, d)
	}
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go
	}
}

// retryTick wakes a connection for its next attempt.
type retryTick struct{ epoch uint64 }

// conn is one connection actor: it POSTs one delivery at a time. The POST
// runs inside Receive, so the actor is busy for at most RequestTimeout; the
// waits between retries are timers, so a stop or restart is never held up by
// a backoff.
type conn struct {
	deps     Deps
	log      zerolog.Logger
	epoch    uint64
	job      *messages.Delivery
	attempts int
	timer    *time.Timer
}

func connProps(deps Deps) *actor.Props {
	opts := deps.Metrics.ActorOptions("connection")
	if deps.Supervisor != nil {
		opts = append(opts, actor.WithSupervisor(deps.Supervisor))
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &conn{deps: deps, epoch: rand.Uint64()}
	}, opts...)
}

func (c *conn) Receive(ctx actor.Context) {
	faults.Inject("connection", ctx.Message())
	switch m := ctx.Message().(type) {
	case *actor.Started:
		c.log = c.deps.Log.With().Str("actor", ctx.Self().Id).Logger()
		ctx.Send(ctx.Parent(), &connIdle{pid: ctx.Self(), started: true})
	case *messages.Delivery:
		c.job, c.attempts = m, 0
		c.deps.Metrics.SendsInFlight.Inc()
		c.attempt(ctx)
	case *retryTick:
		if m.epoch == c.epoch && c.job != nil {
			c.attempt(ctx)
		}
	case *actor.Restarting, *actor.Stopping:
		c.epoch++
		if c.timer != nil {
			c.timer.Stop()
		}
		if c.job != nil {
			// The pool still holds the delivery and hands it out again
			// when this connection restarts (or stops for good).
			c.deps.Metrics.SendsInFlight.Dec()
			c.job = nil
		}
	}
}

func (c *conn) attempt(ctx actor.Context) {
	job := c.job
	c.attempts++
	m := c.deps.Metrics
	began := time.Now()
	res := c.deps.Client.Post(c.deps.Ctx, job.URL, job.Body)
	m.SendDuration.Observe(time.Since(began).Seconds())
	m.FluentdResponses.WithLabelValues(metrics.StatusClass(res.Status)).Inc()
	switch res.Class {
	case Success:
		m.Health.FluentdSend(nil)
		m.EventsSent.WithLabelValues(job.Stream).Inc()
		c.finish(ctx, messages.Sent, res.Status)
		return
	case Permanent:
		err := c.deps.DeadLetters.Append(persistence.DeadLetter{
			Time: time.Now().UTC(), URL: job.URL, Status: res.Status, Reason: res.Reason,
			EventID: job.EventID, Type: job.Type, Event: job.Body,
		})
		if err == nil {
			m.Health.FluentdSend(nil)
			m.EventsDeadLettered.WithLabelValues(job.Stream).Inc()
			c.log.Error().Str("url", job.URL).Int("status", res.Status).Str("reason", res.Reason).
				Str("event_id", job.EventID).Str("event_type", job.Type).Str("file", c.deps.DeadLetters.Path()).
				Msg("fluentd rejected the event for good; written to the dead-letter file")
			c.finish(ctx, messages.DeadLettered, res.Status)
			return
		}
		// Not durable yet: keep the event and try again.
		res.Reason = fmt.Sprintf("%s; dead-letter write failed: %v", res.Reason, err)
	}
	if c.deps.Ctx.Err() != nil {
		return // shutting down: the event stays unacknowledged and is resent on start
	}
	m.EventsRetried.WithLabelValues(job.Stream).Inc()
	m.Health.FluentdSend(errors.New(res.Reason))
	delay := Backoff(c.attempts, res.RetryAfter, func(d time.Duration) time.Duration { return rand.N(d + 1) })
	ev := c.log.Warn()
	if c.attempts >= 3 {
		ev = c.log.Error()
	}
	ev.Str("url", job.URL).Int("status", res.Status).Str("reason", res.Reason).Int("attempt", c.attempts).
		Dur("retry_in", delay).Msg("fluentd send failed; retrying")
	self, system, epoch := ctx.Self(), ctx.ActorSystem(), c.epoch
	c.timer = time.AfterFunc(delay, func() { system.Root.Send(self, &retryTick{epoch: epoch}) })
}

func (c *conn) finish(ctx actor.Context, o messages.Outcome, status int) {
	job := c.job
	c.job = nil
	c.deps.Metrics.SendsInFlight.Dec()
	ctx.Send(job.ReplyTo, &messages.Delivered{Epoch: job.Epoch, Seq: job.Seq, Outcome: o, Status: status, Attempts: c.attempts})
	ctx.Send(ctx.Parent(), &connIdle{pid: ctx.Self()})
}
