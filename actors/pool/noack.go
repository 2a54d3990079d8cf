package pool

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

// Over the forward protocol a receiver says nothing about a message it
// will not take: in_forward drops a message over its chunk_size_limit
// without an ack, and the same batch sent again is dropped again, for
// ever. A stalled Fluentd (a full buffer) leaves every message unanswered
// too, and there nothing is wrong with the events. The endpoint's count of
// accepted messages (breakers.acks) tells the two apart: a message left
// unanswered while the endpoint accepts others, or unanswered twice, is
// sent in halves, down to single events; a single event left unanswered
// MaxNoAcks times while others are accepted is rejected like one Fluentd
// refused (a dead letter, the breaker's rules apply). While nothing at all
// is accepted, it is an outage: the events wait, retried, readiness red.

// MaxNoAcks is how many times a single event is left unanswered, while its
// endpoint accepts other messages, before it is rejected.
const MaxNoAcks = 3

// unanswered is what a job knows of its messages left without an answer.
type unanswered struct {
	// sentMark is the endpoint's count of accepted messages when the
	// current attempt was sent; ackMark is sentMark of the job's first
	// unanswered attempt (marked): acks since are other messages'.
	sentMark, ackMark uint64
	marked            bool
	// noAcks counts the unanswered attempts of the current message.
	noAcks int
	// halved is set once the job was split for want of an answer: the
	// halves were unanswered before, so a half unanswered is split at once.
	halved bool
}

// tooLarge handles a message larger than the receiver takes (forward:
// --fluentd-max-message-kb), which was not sent: in halves, down to an
// event alone, which is rejected.
func (c *conn) tooLarge(ctx actor.Context, j *sendJob, res wire.Result) {
	if n := len(j.sending()); n > 1 {
		c.log.Debug().Int("events", n).Str("reason", res.Reason).Msg("a forward message would be too large; sending it in halves")
		j.split()
		c.attempt(j)
		return
	}
	c.rejected(ctx, j, res)
}

// noAck handles a message written in full and left unanswered (see above).
func (c *conn) noAck(ctx actor.Context, j *sendJob, res wire.Result) {
	send := j.sending()
	url := send[0].URL
	if !j.marked {
		j.ackMark, j.marked = j.sentMark, true
	}
	j.noAcks++
	others := c.deps.breakers.acks(url) > j.ackMark
	switch {
	case len(send) > 1 && (others || j.noAcks > 1 || j.halved):
		c.log.Warn().Str("url", url).Int("events", len(send)).Str("reason", res.Reason).
			Msg("fluentd left a forward message unanswered; sending it in halves (in_forward drops a message over its chunk_size_limit without an answer: set --fluentd-max-message-kb below it)")
		if others {
			c.deps.breakers.unanswered(url, size(send))
		}
		j.split()
		j.halved = true
		c.attempt(j)
	case len(send) == 1 && others && j.noAcks >= MaxNoAcks:
		res.Reason = fmt.Sprintf("fluentd left this event unanswered %d times while it acknowledged other messages: "+
			"in_forward drops a message over its chunk_size_limit without an answer (raise chunk_size_limit, "+
			"and set --fluentd-max-message-kb to it); last: %s", j.noAcks, res.Reason)
		c.rejected(ctx, j, res)
	default:
		// Nothing else answered either: a stalled or slow Fluentd.
		c.retry(ctx, j, res)
	}
}

// split makes the job's next attempt send the first half of its current
// message.
func (j *sendJob) split() {
	j.take = max(len(j.sending())/2, 1)
	j.events, j.attempts, j.noAcks = nil, 0, 0
}

// fit halves what the job's next attempt sends until it is smaller than
// the smallest message its endpoint left unanswered while it accepted
// others: once one batch taught the receiver's limit, the next ones do not
// wait for an answer that will not come.
func (c *conn) fit(j *sendJob) {
	for send := j.sending(); len(send) > 1 && !c.deps.breakers.fits(send[0].URL, size(send)); send = j.sending() {
		j.take = len(send) / 2
		j.events = nil
	}
}
