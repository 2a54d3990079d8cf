// Package messages holds the plain Go types that the actors exchange.
//
// Every reply carries the epoch of the actor incarnation that asked, so an
// actor restarted by its supervisor can tell answers meant for its previous
// life (and ignore them) from its own.
package messages

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Delivery asks the Fluentd pool to POST one event.
type Delivery struct {
	Epoch   uint64
	Seq     uint64
	URL     string
	Body    []byte // the event's JSON as it is
	EventID string
	Type    string
	ReplyTo *actor.PID
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
// is sent, so every Delivery gets exactly one Delivered unless the pool loses
// it in a restart (then PoolStarted tells the requester to send it again).
type Delivered struct {
	Epoch    uint64
	Seq      uint64
	Outcome  Outcome
	Status   int
	Attempts int
}

// PoolStarted is published on the actor system's event stream each time the
// Fluentd pool (re)starts: deliveries that were queued in a previous
// incarnation are gone and must be sent again.
type PoolStarted struct {
	PID *actor.PID
}

// Save asks the checkpoint writer to commit writes in one fsync'd
// transaction. Saves with the same Key are coalesced: only the newest is
// written, and Saved reports the newest Seq committed.
type Save struct {
	Key     string
	Epoch   uint64
	Seq     uint64
	Writes  []persistence.Write
	ReplyTo *actor.PID
}

// Saved confirms that a Save (and every earlier one with its Key) is on disk.
type Saved struct {
	Key   string
	Epoch uint64
	Seq   uint64
}

// Drain asks the poller to stop fetching and report Drained once every
// event it handed out is settled and checkpointed.
type Drain struct{}

// Drained answers Drain.
type Drained struct{}

// CaughtUp is sent by the poller to the root when --exit-on-last-event is
// set and everything up to now is delivered and checkpointed.
type CaughtUp struct {
	Events uint64
}

// Shutdown asks the root to stop the pipeline in order. Code is the process
// exit code the root reports once everything is stopped.
type Shutdown struct {
	Reason string
	Code   int
}
