package pool

import (
	"encoding/base64"
	"encoding/json"
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventsyslog"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Letters taken back (see breakers) are events still owed to the
// receiver: their requesters were answered when the letters were written,
// and the checkpoint may have passed them. They must outlive a restart as
// what they are. So the letters are marked in the file when taken back
// (DeadLetters.MarkTakenBack), and the pool's first start queues the
// marked ones again, removing each letter once its event is accepted.
//
// A reader that starts again from its checkpoint sends again those of
// these events it had not checkpointed: its delivery joins the copy taken
// back instead of being sent a second time, answered as the copy is
// settled (at once when the copy was accepted already).

// owedEvent is an event taken back, by its letter's key.
type owedEvent struct {
	accepted bool
	waiters  []*messages.Delivery // requesters' deliveries of the event, answered with the copy
}

// letterKey is the key of d's letter in the dead-letter file.
func letterKey(d *messages.Delivery) string {
	if d.EventID != "" {
		return persistence.LetterKey(d.URL, d.EventID, nil) // the body is not part of it: spare its JSON
	}
	return persistence.LetterKey(d.URL, "", letterEvent(d))
}

// letterEvent is the event of d as its dead letter holds it: its JSON,
// made back from the entry when the body was made for in_forward, and
// taken from the message's MSG when it was made for a syslog receiver.
func letterEvent(d *messages.Delivery) json.RawMessage {
	toJSON := eventmsgpack.ToJSON
	if eventsyslog.Is(d.Body) {
		toJSON = eventsyslog.ToJSON
	}
	js, err := toJSON(d.Body)
	if err == nil {
		return js
	}
	// Never seen (every body is the daemon's own): the bytes are kept
	// rather than the event lost, for whoever reads the file.
	b, _ := json.Marshal(map[string]string{"undecodable_body_base64": base64.StdEncoding.EncodeToString(d.Body), "decode_error": err.Error()})
	return b
}

// owe records cp, a copy taken back; mu must be held.
func (b *breakers) owe(cp *messages.Delivery) {
	if _, ok := b.owed[letterKey(cp)]; !ok {
		b.owed[letterKey(cp)] = &owedEvent{}
	}
}

// settleOwed records that the copy d was accepted (or rejected for good
// again), and returns the deliveries that waited for it; mu must be held.
func (b *breakers) settleOwed(d *messages.Delivery, accepted bool) []*messages.Delivery {
	o := b.owed[letterKey(d)]
	if o == nil {
		return nil
	}
	waiters := o.waiters
	o.waiters = nil
	if accepted {
		o.accepted = true // a later delivery of it is answered at once
	} else {
		delete(b.owed, letterKey(d))
	}
	return waiters
}

// join settles a requester's delivery of an event owed: answered now when
// its copy was accepted (sent false), else it waits for the copy (joined).
// Neither: it is no owed event's, and is sent as any other.
func (b *breakers) join(d *messages.Delivery) (joined, sent bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.owed) == 0 {
		return false, false
	}
	o := b.owed[letterKey(d)]
	switch {
	case o == nil:
		return false, false
	case o.accepted:
		return true, true
	}
	o.waiters = append(o.waiters, d)
	return true, false
}

// load takes back the letters a previous run marked, and returns their
// copies to queue.
func (b *breakers) load(letters []persistence.DeadLetter) []*messages.Delivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*messages.Delivery, 0, len(letters))
	for _, l := range letters {
		stream := l.Stream
		if stream == "" {
			stream = metrics.Audit // letters of versions before the field
		}
		cp := &messages.Delivery{URL: l.URL, Body: l.Event, EventID: l.EventID, Type: l.Type, Stream: stream}
		if _, dup := b.owed[letterKey(cp)]; dup {
			continue
		}
		b.takenBack[cp] = true
		b.owe(cp)
		out = append(out, cp)
	}
	return out
}

// answer sends the requesters of ds their Delivered, with outcome, status
// and attempts: one Answers message per requester (a batch's deliveries
// are usually one reader's).
func answer(ctx actor.Context, ds []*messages.Delivery, o messages.Outcome, status, attempts int) {
	var to []*actor.PID
	var answers []*messages.Answers
	for _, d := range ds {
		if d.ReplyTo == nil { // a delivery taken back: its requester was answered
			continue
		}
		i := slices.IndexFunc(to, d.ReplyTo.Equal)
		if i < 0 {
			i = len(to)
			to, answers = append(to, d.ReplyTo), append(answers, &messages.Answers{})
		}
		answers[i].Items = append(answers[i].Items, messages.Delivered{Epoch: d.Epoch, Seq: d.Seq, Outcome: o, Status: status, Attempts: attempts})
	}
	for i, pid := range to {
		ctx.Send(pid, answers[i])
	}
}
