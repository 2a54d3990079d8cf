package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// connKind is the kind of the connection actors.
const connKind = "connection"

// Depth is how many jobs a connection holds at once: it starts the next
// request as soon as an answer comes, without waiting for the pool, so the
// connection does not idle for a round trip between actors.
const Depth = 2

// job is what the pool hands a connection: deliveries to one URL, sent
// together. epoch is the connection incarnation it is meant for: a job sent
// to an earlier one was queued again when this one started.
type job struct {
	id    uint64
	epoch messages.Epoch
	items []*messages.Delivery
	// probe is set on a job sent while its endpoint's breaker is open.
	probe bool
}

// connStarted tells the pool that a connection (re)started, as incarnation
// epoch: whatever it held before is not going to finish.
type connStarted struct {
	pid   *actor.PID
	epoch messages.Epoch
}

// connIdle tells the pool that a connection finished a job and can take
// another.
type connIdle struct {
	pid *actor.PID
	job uint64
}

// connSettled tells the pool that a connection settled one delivery of a
// job while sending the job's events one at a time (to isolate a rejected
// one): a restart of the connection then hands out only the rest again.
type connSettled struct {
	pid *actor.PID
	job uint64
	d   *messages.Delivery
}

// takenBack hands the pool deliveries taken back out of the dead-letter
// file.
type takenBack struct{ items []*messages.Delivery }

// probed hands the pool back a job whose first delivery, a probe of an
// open breaker, was rejected: the rest go first in line again, the probe
// to the back.
type probed struct {
	pid *actor.PID
	job uint64
}

// retryTick wakes a connection for the next attempt of a job.
type retryTick struct{ job uint64 }

// sendReq asks a connection's sender goroutine for one request; sendDone
// is its answer.
type sendReq struct {
	job    uint64
	url    string
	events [][]byte
}

type sendDone struct {
	job  uint64
	res  wire.Result
	took time.Duration
}

// sendJob is a job a connection holds.
type sendJob struct {
	id uint64
	// items are the job's deliveries not yet settled, in order.
	items []*messages.Delivery
	// take, when above zero, is how many of items an attempt sends: 1
	// once Fluentd refused the batch for good, so that only the bad events
	// are dead-lettered; a half of the last message when that one got no
	// answer or was too large (see noack.go).
	take     int
	events   [][]byte // of the current attempt, kept across its retries
	attempts int
	retry    timer.Timer
	probe    bool // sent as the probe of an open breaker
	unanswered
}

// sending is what the job's current attempt sends.
func (j *sendJob) sending() []*messages.Delivery {
	if j.take > 0 && j.take < len(j.items) {
		return j.items[:j.take]
	}
	return j.items
}

// conn is one connection actor. Its requests run one after the other on a
// goroutine of its own (whose stack stays grown, where a mailbox goroutine
// would grow one for every request), so the actor answers a stop at once;
// the goroutine is cancelled and waited for when the actor stops or
// restarts, so no incarnation's request outlives it. It holds up to Depth
// jobs: the next one's request is queued to the sender while the current
// one is on the wire. The waits between retries are timers.
type conn struct {
	deps     Deps
	log      zerolog.Logger
	epoch    messages.Epoch
	requests chan<- sendReq
	sender   *supervisor.Task
	jobs     map[uint64]*sendJob
}

func connProps(deps Deps) *actor.Props {
	return deps.Kit.Props(connKind, func() actor.Actor {
		return &conn{deps: deps, jobs: map[uint64]*sendJob{}}
	})
}

func (c *conn) Receive(ctx actor.Context) {
	switch m := supervisor.Fault(timer.Message(ctx), connKind).(type) {
	case *actor.Started:
		c.start(ctx)
	case *job:
		if m.epoch == c.epoch {
			j := &sendJob{id: m.id, items: m.items, probe: m.probe, retry: timer.Timer{Clock: c.deps.Clock}}
			c.jobs[m.id] = j
			c.deps.Metrics.SendsInFlight.Inc()
			c.attempt(j)
		}
	case *retryTick:
		if j := c.jobs[m.job]; j != nil {
			c.attempt(j)
		}
	case *sendDone:
		if j := c.jobs[m.job]; j != nil {
			c.done(ctx, j, m.res, m.took)
		}
	case *actor.Restarting, *actor.Stopping:
		c.stop()
	}
}

func (c *conn) start(ctx actor.Context) {
	c.epoch = messages.NewEpoch()
	c.log = c.deps.Log.With().Str("actor", ctx.Self().Id).Logger()
	// At most one attempt of each job is queued: Depth never blocks.
	requests := make(chan sendReq, Depth)
	s := c.deps.Transport.NewSender()
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.sender = supervisor.Go(c.deps.Ctx, func(ctx context.Context) {
		defer s.Close()
		send(ctx, s, requests, func(d *sendDone) { root.Send(self, d) })
	})
	c.requests = requests
	ctx.Send(ctx.Parent(), &connStarted{pid: ctx.Self(), epoch: c.epoch})
}

// stop ends the sender, aborting its request in progress, and drops the
// jobs: the pool still holds their deliveries and hands them out again
// when this connection restarts (or stops for good).
func (c *conn) stop() {
	c.sender.Stop()
	c.sender = nil
	for id, j := range c.jobs {
		j.retry.Stop()
		c.deps.Metrics.SendsInFlight.Dec()
		delete(c.jobs, id)
	}
}

// send makes one connection incarnation's requests, in order, until ctx
// ends (the actor stopped, or a shutdown aborted the sends: the events in
// flight stay unconfirmed and are sent again on the next start).
func send(ctx context.Context, s wire.Sender, requests <-chan sendReq, reply func(*sendDone)) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-requests:
			began := time.Now()
			res := s.Send(ctx, r.url, r.events)
			if ctx.Err() != nil {
				return
			}
			reply(&sendDone{job: r.job, res: res, took: time.Since(began)})
		}
	}
}

// attempt queues the job's next request to the sender.
func (c *conn) attempt(j *sendJob) {
	c.fit(j)
	send := j.sending()
	if j.events == nil {
		j.events = make([][]byte, len(send))
		for i, d := range send {
			j.events[i] = d.Body
		}
	}
	j.attempts++
	j.sentMark = c.deps.breakers.acks(send[0].URL)
	c.requests <- sendReq{job: j.id, url: send[0].URL, events: j.events}
}

// responseClass labels an answer: its status class over HTTP; over the
// forward protocol, which has no status, ack or refused (the shared key);
// error when no answer came.
func responseClass(res wire.Result) string {
	switch {
	case res.Status > 0:
		return metrics.StatusClass(res.Status)
	case res.Class == wire.Success:
		return "ack"
	case res.Class == wire.Refused:
		return "refused"
	}
	return "error"
}

// done judges the answer to an attempt of j.
func (c *conn) done(ctx actor.Context, j *sendJob, res wire.Result, took time.Duration) {
	send := j.sending()
	m := c.deps.Metrics
	m.SendDuration.Observe(took.Seconds())
	m.BatchEvents.Observe(float64(len(send)))
	m.FluentdResponses.WithLabelValues(responseClass(res)).Inc()
	switch res.Class {
	case wire.Success:
		c.accepted(ctx, j, res)
		return
	case wire.Permanent:
		switch {
		case len(send) > 1:
			// One bad event, or a body too big: find out event by event
			// (with the breaker open, each is a probe).
			m.Health.FluentdSend(nil)
			c.log.Warn().Str("url", send[0].URL).Int("status", res.Status).Str("reason", res.Reason).Int("events", len(send)).
				Msg("fluentd rejected a batch for good; sending its events one at a time")
			j.take, j.events, j.attempts = 1, nil, 0
			c.attempt(j)
		default:
			c.rejected(ctx, j, res)
		}
		return
	case wire.Refused:
		c.refused(ctx, j, res)
		return
	case wire.TooLarge:
		c.tooLarge(ctx, j, res)
		return
	}
	if res.NoAck {
		c.noAck(ctx, j, res)
		return
	}
	c.retry(ctx, j, res)
}

// refused handles a receiver that refuses service whatever the events:
// the events wait (nothing is dead-lettered), readiness turns red at once,
// and an error line goes out at most every refusalLogEvery for the pool.
func (c *conn) refused(ctx actor.Context, j *sendJob, res wire.Result) {
	send, url := c.refusedSend(j, res, false)
	delay := wire.RetryDelay(j.attempts, res.RetryAfter)
	c.deps.refusals.Error().Str("url", url).Int("status", res.Status).Str("reason", excerpt(res.Reason)).
		Int("failures", j.attempts).Int("events", len(send)).Dur("retry_in", delay).
		Msg("the fluentd receiver refuses service (not about the events, which wait and are not dead-lettered): " +
			"check its address, route, credentials or the proxy in front of it")
	j.retry.After(ctx, delay, &retryTick{job: j.id})
}

// refusedSend counts the events j was sending as retried and turns
// readiness red for a refusal (probing: a rejected probe of an open
// breaker); it returns them and their URL.
func (c *conn) refusedSend(j *sendJob, res wire.Result, probing bool) ([]*messages.Delivery, string) {
	send := j.sending()
	m := c.deps.Metrics
	for _, d := range send {
		m.EventsRetried.WithLabelValues(d.Stream).Inc()
	}
	m.Health.FluentdRefused(res.Status, probing)
	return send, send[0].URL
}

// excerpt is the start of a reason, for readiness and log lines.
func excerpt(reason string) string {
	const most = 200
	if len(reason) <= most {
		return reason
	}
	return strings.ToValidUTF8(reason[:most], "") + "..."
}

// rejected handles the rejection for good of an event sent alone: a dead
// letter, unless the rejections on its URL are systemic (see breakers).
func (c *conn) rejected(ctx actor.Context, j *sendJob, res wire.Result) {
	d := j.sending()[0]
	br := c.deps.breakers
	if br.wasTakenBack(d) && !br.isOpen(d.URL) {
		// Sent again after a breaker closed, and rejected again: a bad
		// event after all, whose letter is in the file already. It does not
		// count towards a run.
		answer(ctx, br.relettered(d), messages.DeadLettered, res.Status, 0)
		c.deps.Metrics.Health.FluentdSend(nil)
		c.settle(ctx, j, 1, messages.DeadLettered, res.Status)
		return
	}
	open, takeBack := br.reject(d, res.Status, res.Reason)
	c.takeBack(ctx, takeBack)
	if open {
		c.probeFailed(ctx, j, res)
		return
	}
	err := c.deadLetter(d, res)
	c.deps.Metrics.Health.DeadLetters(err)
	if err != nil {
		// Not durable yet (the file is full, or the write failed): keep the
		// event, unanswered, and try again.
		br.unreject(d)
		res.Reason = fmt.Sprintf("%s; dead-letter write failed: %v", res.Reason, err)
		c.retry(ctx, j, res)
		return
	}
	if back := br.lettered(d); back != nil {
		c.takeBack(ctx, []*messages.Delivery{back}) // the breaker opened meanwhile
	}
	c.settle(ctx, j, 1, messages.DeadLettered, res.Status)
}

// takeBack hands the pool deliveries taken back out of the dead-letter
// file, to send once their endpoint's breaker closes.
func (c *conn) takeBack(ctx actor.Context, items []*messages.Delivery) {
	if len(items) == 0 {
		return
	}
	c.log.Warn().Str("url", items[0].URL).Int("events", len(items)).
		Msg("taking back the dead letters of a run of rejections: they are sent again once the receiver accepts events")
	keys := make([]string, len(items))
	for i, d := range items {
		keys[i] = letterKey(d)
	}
	if _, err := c.deps.DeadLetters.MarkTakenBack(keys); err != nil {
		c.log.Error().Err(err).Int("events", len(items)).Str("file", c.deps.DeadLetters.Path()).
			Msg("the letters taken back could not be marked so in the dead-letter file: if the daemon stops before they are delivered, " +
				"the next start does not send them again; replay them then (dead-letters replay)")
	}
	ctx.Send(ctx.Parent(), &takenBack{items: items})
}

// probeFailed handles an event rejected while its endpoint's breaker is
// open: it is not dead-lettered but handed back to the pool, unanswered, to
// the back of its queue (with the rest of its job), and the next probe
// waits a backoff.
func (c *conn) probeFailed(ctx actor.Context, j *sendJob, res wire.Result) {
	_, url := c.refusedSend(j, res, true)
	m := c.deps.Metrics
	next := c.deps.breakers.probeFailed(url, c.deps.Clock.Now(), j.probe)
	c.deps.refusals.Error().Str("url", url).Int("status", res.Status).Time("next_probe", next).
		Msg(c.deps.breakers.cause(url))
	j.retry.Stop()
	delete(c.jobs, j.id)
	m.SendsInFlight.Dec()
	ctx.Send(ctx.Parent(), &probed{pid: ctx.Self(), job: j.id})
}

// accepted settles what Fluentd took.
func (c *conn) accepted(ctx actor.Context, j *sendJob, res wire.Result) {
	send := j.sending()
	m := c.deps.Metrics
	m.Health.FluentdSend(nil)
	wasOpen, back, waiters := c.deps.breakers.accepted(send[0].URL, send)
	if wasOpen || len(back) > 0 {
		c.delivered(send[0].URL, wasOpen, back)
	}
	answer(ctx, waiters, messages.Sent, res.Status, 0)
	acked := time.Now()
	for _, d := range send {
		m.EventsSent.WithLabelValues(d.Stream).Inc()
		if !d.Fetched.IsZero() {
			m.FetchToAck.WithLabelValues(d.Stream).Observe(acked.Sub(d.Fetched).Seconds())
		}
	}
	c.settle(ctx, j, len(send), messages.Sent, res.Status)
}

// delivered logs a breaker that closed, and takes the letters of the
// deliveries taken back, now accepted, out of the dead-letter file.
func (c *conn) delivered(url string, closed bool, back []*messages.Delivery) {
	if closed {
		c.log.Info().Str("url", url).Msg("the fluentd receiver accepts events again; sending what waited")
	}
	if len(back) == 0 {
		return
	}
	keys := make([]string, len(back))
	for i, d := range back {
		keys[i] = letterKey(d)
	}
	n, err := c.deps.DeadLetters.Remove(keys)
	if err != nil {
		// Delivered all the same: the letters stay, as copies.
		c.log.Error().Err(err).Int("events", len(back)).Msg("events taken back were delivered, but their letters could not be removed from the dead-letter file")
		return
	}
	c.log.Info().Int("events", n).Str("file", c.deps.DeadLetters.Path()).Msg("events taken back were delivered and removed from the dead-letter file")
}

// deadLetter writes an event Fluentd refused for good to the dead-letter
// file.
func (c *conn) deadLetter(d *messages.Delivery, res wire.Result) error {
	err := c.deps.DeadLetters.Append(persistence.DeadLetter{
		Time: time.Now().UTC(), URL: d.URL, Status: res.Status, Reason: res.Reason,
		EventID: d.EventID, Type: d.Type, Event: letterEvent(d), Stream: d.Stream,
	})
	if err != nil {
		return err
	}
	c.deps.Metrics.Health.FluentdSend(nil)
	c.deps.Metrics.EventsDeadLettered.WithLabelValues(d.Stream).Inc()
	c.log.Error().Str("url", d.URL).Int("status", res.Status).Str("reason", res.Reason).
		Str("event_id", d.EventID).Str("event_type", d.Type).Str("file", c.deps.DeadLetters.Path()).
		Msg("fluentd rejected the event for good; written to the dead-letter file")
	return nil
}

// retry schedules the next attempt of j after a failed one.
func (c *conn) retry(ctx actor.Context, j *sendJob, res wire.Result) {
	send := j.sending()
	m := c.deps.Metrics
	for _, d := range send {
		m.EventsRetried.WithLabelValues(d.Stream).Inc()
	}
	m.Health.FluentdSend(errors.New(res.Reason))
	delay := wire.RetryDelay(j.attempts, res.RetryAfter)
	ev := c.log.Warn()
	if j.attempts >= 3 {
		ev = c.log.Error()
	}
	ev.Str("url", send[0].URL).Int("status", res.Status).Str("reason", res.Reason).Int("failures", j.attempts).
		Int("events", len(send)).Dur("retry_in", delay).Msg("fluentd send failed; retrying")
	j.retry.After(ctx, delay, &retryTick{job: j.id})
}

// settle answers the first n deliveries of j and moves on: to the next
// event of a batch being sent one at a time, or frees the job's slot.
func (c *conn) settle(ctx actor.Context, j *sendJob, n int, o messages.Outcome, status int) {
	answer(ctx, j.items[:n], o, status, j.attempts)
	if n < len(j.items) {
		for _, d := range j.items[:n] {
			ctx.Send(ctx.Parent(), &connSettled{pid: ctx.Self(), job: j.id, d: d})
		}
		j.items, j.events, j.attempts, j.noAcks = j.items[n:], nil, 0, 0
		c.attempt(j)
		return
	}
	delete(c.jobs, j.id)
	c.deps.Metrics.SendsInFlight.Dec()
	ctx.Send(ctx.Parent(), &connIdle{pid: ctx.Self(), job: j.id})
}
