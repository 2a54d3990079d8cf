// Package timer delivers a message to an actor after a delay, on a clock
// that tests can drive.
//
// An actor keeps one Timer per purpose. Arming it again replaces what was
// pending and Stop cancels it; a message of a replaced or cancelled arming
// that is already on its way is recognised on receipt by Message and
// dropped, so actors need no epochs of their own for their timers. An actor
// stops its timers when it stops or restarts: a timer would outlive the
// instance that armed it otherwise, and its message reach the next one.
package timer

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
)

// Real is the wall clock, for the Clock fields left nil.
var Real = clockwork.NewRealClock()

// Or returns c, or the real clock when c is nil.
func Or(c clockwork.Clock) clockwork.Clock {
	if c == nil {
		return Real
	}
	return c
}

// Timer sends one message to its actor after a delay. The zero value uses
// the real clock. Use it from its actor's Receive only.
type Timer struct {
	Clock clockwork.Clock

	t   clockwork.Timer
	gen uint64 // of the pending arming
	due time.Time
}

// fired is what the clock sends to the actor.
type fired struct {
	t   *Timer
	gen uint64
	msg any
}

// After arms the timer to send msg to the actor of ctx after d, replacing
// whatever it had pending.
func (t *Timer) After(ctx actor.Context, d time.Duration, msg any) {
	t.Stop()
	self, root := ctx.Self(), ctx.ActorSystem().Root
	f := &fired{t: t, gen: t.gen, msg: msg}
	clock := Or(t.Clock)
	t.due = clock.Now().Add(d)
	t.t = clock.AfterFunc(d, func() { root.Send(self, f) })
}

// Stop cancels what is pending.
func (t *Timer) Stop() {
	if t.t != nil {
		t.t.Stop()
		t.t = nil
	}
	t.gen++
}

// Armed is true while a message is pending.
func (t *Timer) Armed() bool { return t.t != nil }

// Due is when the pending message is sent; zero when none is.
func (t *Timer) Due() time.Time {
	if t.t == nil {
		return time.Time{}
	}
	return t.due
}

// Message returns the message of ctx, unwrapped when a timer sent it: the
// message it was armed with, or nil for one that is stale (it then matches
// no case of the actor's switch). Receiving a live one disarms its timer.
func Message(ctx actor.Context) any {
	msg := ctx.Message()
	f, ok := msg.(*fired)
	if !ok {
		return msg
	}
	if f.t.t == nil || f.gen != f.t.gen {
		return nil
	}
	f.t.t = nil
	return f.msg
}
