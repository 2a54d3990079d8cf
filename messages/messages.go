// Package messages holds the plain Go types that the actors exchange.
//
// Every reply carries the epoch (Epoch) of the actor incarnation that asked,
// so an actor restarted by its supervisor can tell answers meant for its
// previous life (and ignore them) from its own.
package messages

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Epoch marks one incarnation of an actor: what it asks carries its epoch,
// the answer carries it back, and the actor ignores an answer whose epoch is
// not its own. Every actor that is answered (a reader, a tap, a player, a
// connection) takes a new one when it starts, with NewEpoch. Timers need
// none: timer.Message drops a stale one.
type Epoch uint64

// NewEpoch returns the epoch of a new incarnation: random, so that it
// differs from its predecessors' without a count kept across restarts.
func NewEpoch() Epoch { return Epoch(rand.Uint64()) }

// Delivery asks the pool to send one event to Fluentd.
type Delivery struct {
	Epoch   Epoch
	Seq     uint64
	URL     string
	Body    []byte // the event's JSON as it is
	EventID string
	Type    string
	Stream  string // "audit" or "session", for metrics
	ReplyTo *actor.PID
	// Fetched is when the event was read from Teleport, for the
	// fetch-to-acknowledgement histogram; zero leaves it out.
	Fetched time.Time
}

// Deliveries hands the pool, in one message, the deliveries a reader hands
// out at once (a page's events, to one URL): a message through the actors
// per page rather than per event. Each is still a Delivery of its own,
// answered, dead-lettered and checkpointed alone.
type Deliveries struct {
	Items []*Delivery
}

// Outcome says how a delivery ended.
type Outcome int

const (
	// Sent means Fluentd answered 2xx.
	Sent Outcome = iota
	// DeadLettered means Fluentd rejected the event for good (a 4xx other
	// than 408/429) and the event was written to the dead-letter file.
	DeadLettered
)

func (o Outcome) String() string {
	if o == DeadLettered {
		return "dead-lettered"
	}
	return "sent"
}

// Delivered answers a Delivery once it is settled. Retries happen before it
// is sent, and the pool hands out again what it or a connection held when
// it failed, so every Delivery gets one Delivered: requesters send each
// delivery once. (A failure just after an answer went out can make it two;
// requesters ignore answers to what is settled.)
type Delivered struct {
	Epoch    Epoch
	Seq      uint64
	Outcome  Outcome
	Status   int
	Attempts int
}

// Answers carries, in one message, the Delivered of one requester's
// deliveries settled together (a batch's, or those a copy taken back
// settled).
type Answers struct {
	Items []Delivered
}

// Save asks the checkpoint writer to commit writes in one fsync'd
// transaction. Saves with the same Key are coalesced: only the newest is
// written, and Saved reports the newest Seq committed.
type Save struct {
	Key     string
	Epoch   Epoch
	Seq     uint64
	Writes  []kv.Write // built with persistence's constructors
	ReplyTo *actor.PID
}

// Saved confirms that a Save (and every earlier one with its Key) is on disk.
type Saved struct {
	Key   string
	Epoch Epoch
	Seq   uint64
}

// SaveFailed answers a Save that can never be written (a key or value
// outside the state file's limits, a record that does not encode:
// persistence.Unwritable), instead of Saved. The writer has dropped it and
// goes on with the other saves; the requester decides what the loss of
// this one means, and must not send it again unchanged. Err names the
// cause and is Unrecoverable for the supervisor, so that a requester that
// cannot go on panics with it and stops with that cause.
type SaveFailed struct {
	Key   string
	Epoch Epoch
	Seq   uint64
	Err   error
}

// Drain asks the poller to stop fetching and report Drained once every
// event it handed out is settled and checkpointed.
type Drain struct{}

// Drained answers Drain.
type Drained struct{}

// CaughtUp is sent to the root, with --exit-on-last-event, by each child
// that finishes (Name is the child's name) once everything it knows of up
// to now is delivered and checkpointed. The poller also sends it to its taps,
// which finish after it. A non-nil Err makes the daemon exit with it once
// every child has finished (work left undone that the next start retries).
type CaughtUp struct {
	Name   string
	Events uint64
	Err    error
}

// Observe hands an audit event to a tap of the poller (the session manager,
// the lock policy). The poller's checkpoint does not move past the event
// until the tap answers Observed, so a tap must answer only once what it
// needs of the event is durable: a crash then replays the event to it.
type Observe struct {
	Epoch   Epoch
	Seq     uint64
	Event   *auditlogpb.EventUnstructured
	ReplyTo *actor.PID
}

// Observed answers Observe; Tap is the answering tap's own PID.
type Observed struct {
	Epoch Epoch
	Seq   uint64
	Tap   *actor.PID
}

// TapStarted is published on the event stream each time a tap (re)starts:
// Observes sent to a previous incarnation may be lost and are sent again.
type TapStarted struct {
	PID *actor.PID
}

// Shutdown asks the root to stop the pipeline in order. Code is the process
// exit code the root reports once everything is stopped.
type Shutdown struct {
	Reason string
	Code   int
}

// LogValue keeps an event's body out of every log line that names a
// Delivery (protoactor logs undeliverable messages at debug level): only
// what identifies it.
func (d *Delivery) LogValue() slog.Value {
	return slog.GroupValue(slog.String("event_id", d.EventID), slog.String("event_type", d.Type),
		slog.String("url", d.URL), slog.Int("bytes", len(d.Body)))
}

// LogValue keeps the events' bodies out of log lines, as Delivery's does.
func (d *Deliveries) LogValue() slog.Value {
	url, bytes := "", 0
	for _, item := range d.Items {
		url, bytes = item.URL, bytes+len(item.Body)
	}
	return slog.GroupValue(slog.Int("events", len(d.Items)), slog.String("url", url), slog.Int("bytes", bytes))
}

// String keeps the bodies out of fmt's %v too.
func (d *Deliveries) String() string {
	v := d.LogValue().Group()
	return fmt.Sprintf("Deliveries{events=%d url=%s bytes=%d}", v[0].Value.Int64(), v[1].Value.String(), v[2].Value.Int64())
}

// LogValue keeps the event out of log lines that name an Observe.
func (o *Observe) LogValue() slog.Value {
	return slog.GroupValue(slog.String("event_id", o.Event.GetId()), slog.String("event_type", o.Event.GetType()))
}

// String keeps the body out of fmt's %v too.
func (d *Delivery) String() string {
	return fmt.Sprintf("Delivery{event_id=%s event_type=%s url=%s bytes=%d}", d.EventID, d.Type, d.URL, len(d.Body))
}

// String keeps the event out of fmt's %v too.
func (o *Observe) String() string {
	return fmt.Sprintf("Observe{event_id=%s event_type=%s}", o.Event.GetId(), o.Event.GetType())
}
