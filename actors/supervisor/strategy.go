// Package supervisor is how every actor of the tree is made and restarted.
//
// Kit gives an actor its props: supervised by the tree's Strategy and
// counted by kind in the metrics. A kind is the name an actor is spawned
// with (Spawn names siblings of one kind kind-$<n>), and Kind recovers it
// from a PID, so that metric labels are bounded by the names in the code.
//
// protoactor's own strategies either restart with no delay (OneForOne) or
// back off linearly for ever (ExponentialBackoff). Strategy restarts a failed
// child after a capped, jittered exponential delay and gives up once the
// child has used its restart budget: the child is stopped and its parent
// sees it terminate, which the root turns into an orderly exit with an
// error. Shutdown cancels the restarts still waiting, so that none outlives
// the tree.
//
// Task gives every goroutine an owner, and Fault is every actor's one call
// of the fault hook (package faults), a no-op outside the fault tests.
package supervisor

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
)

// Policy tunes the strategy. The zero value is replaced by Default.
type Policy struct {
	// InitialDelay is the delay before the first restart.
	InitialDelay time.Duration
	// MaxDelay caps the exponential growth.
	MaxDelay time.Duration
	// Budget is the number of failures tolerated within Window; one more
	// and the child is stopped for good.
	Budget int
	Window time.Duration
	// Clock runs the restart delays (the real clock when nil).
	Clock clockwork.Clock
}

// Default restarts after 100ms, 200ms, ... up to 30s, and gives up after the
// 10th failure within 10 minutes.
var Default = Policy{InitialDelay: 100 * time.Millisecond, MaxDelay: 30 * time.Second, Budget: 10, Window: 10 * time.Minute}

// Backoff is the delay before a restart after the n-th failure: full
// jitter on the upper half keeps restarts of many children from lining up
// while never restarting sooner than half the nominal delay.
func (p Policy) Backoff() backoff.Policy {
	return backoff.Policy{Initial: p.InitialDelay, Max: p.MaxDelay, Jitter: true}
}

// Decision is what the strategy did about one failure.
type Decision struct {
	Child    *actor.PID
	Kind     string // the child's kind, e.g. "poller" (see Kind)
	Reason   string
	Cause    any // the panic value
	Failures int // within the window, this one included
	Delay    time.Duration
	GaveUp   bool
	// Unrecoverable is set when the cause is one a restart cannot fix (see
	// Unrecoverable): the child was stopped at its first failure.
	Unrecoverable bool
}

// Unrecoverable is implemented by failure causes (a panic value, or an
// error it wraps) that a restart cannot fix: a corrupt state file, or one
// closed because the daemon stops. A child failing with one is stopped at
// once rather than restarted into the same failure.
type Unrecoverable interface {
	Unrecoverable() bool
}

// unrecoverable reports whether the panic value reason is, or wraps, an
// Unrecoverable cause.
func unrecoverable(reason any) bool {
	err, ok := reason.(error)
	var u Unrecoverable
	return ok && errors.As(err, &u) && u.Unrecoverable()
}

// Strategy implements actor.SupervisorStrategy.
type Strategy struct {
	policy Policy
	log    zerolog.Logger

	mu       sync.Mutex
	observer func(Decision)
	gaveUp   map[string]Decision        // by child PID id
	waiting  map[string]clockwork.Timer // delayed restarts, by child PID id
	shutdown bool
}

// New returns a strategy. Use one per tree: it remembers which children it
// gave up on.
func New(p Policy, log zerolog.Logger) *Strategy {
	if p.InitialDelay <= 0 {
		p.InitialDelay = Default.InitialDelay
	}
	if p.MaxDelay < p.InitialDelay {
		p.MaxDelay = max(Default.MaxDelay, p.InitialDelay)
	}
	if p.Budget <= 0 {
		p.Budget = Default.Budget
	}
	if p.Window <= 0 {
		p.Window = Default.Window
	}
	p.Clock = timer.Or(p.Clock)
	return &Strategy{policy: p, log: log, gaveUp: map[string]Decision{}, waiting: map[string]clockwork.Timer{}}
}

// Observe registers a function called with every decision (metrics, tests).
func (s *Strategy) Observe(f func(Decision)) {
	s.mu.Lock()
	s.observer = f
	s.mu.Unlock()
}

// GaveUp returns the decision that stopped child, if the strategy stopped it.
func (s *Strategy) GaveUp(child *actor.PID) (Decision, bool) {
	if s == nil {
		return Decision{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.gaveUp[child.Id]
	return d, ok
}

// Shutdown cancels the restarts still waiting for their delay; from now on
// a failed child is stopped rather than restarted. The root calls it when
// it starts stopping its children.
func (s *Strategy) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown = true
	for id, t := range s.waiting {
		t.Stop()
		delete(s.waiting, id)
	}
}

// Waiting is how many restarts wait for their delay.
func (s *Strategy) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiting)
}

// HandleFailure implements actor.SupervisorStrategy.
func (s *Strategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	rs.Fail()
	d := Decision{Child: child, Kind: Kind(child), Reason: fmt.Sprint(reason), Cause: reason, Failures: rs.NumberOfFailures(s.policy.Window)}
	s.mu.Lock()
	stopping := s.shutdown
	s.mu.Unlock()
	switch {
	case stopping:
		s.log.Debug().Str("actor", d.Kind).Str("reason", d.Reason).Msg("actor failed while the tree stops; stopping it")
		sup.StopChildren(child)
	case unrecoverable(reason):
		d.Unrecoverable = true
		s.giveUp(system, sup, d)
	case d.Failures > s.policy.Budget:
		s.giveUp(system, sup, d)
	default:
		s.restartLater(system, sup, d)
	}
}

func (s *Strategy) giveUp(system *actor.ActorSystem, sup actor.Supervisor, d Decision) {
	d.GaveUp = true
	s.mu.Lock()
	s.gaveUp[d.Child.Id] = d
	s.mu.Unlock()
	if d.Unrecoverable {
		s.log.Debug().Str("actor", d.Kind).Str("reason", d.Reason).Msg("actor failed in a way a restart cannot fix; stopping it")
	} else {
		s.log.Error().Str("actor", d.Kind).Str("reason", d.Reason).Int("failures", d.Failures).
			Dur("window", s.policy.Window).Msg("actor failed too often, stopping it")
	}
	s.notify(d)
	system.EventStream.Publish(&actor.SupervisorEvent{Child: d.Child, Reason: d.Cause, Directive: actor.StopDirective})
	sup.StopChildren(d.Child)
}

func (s *Strategy) restartLater(system *actor.ActorSystem, sup actor.Supervisor, d Decision) {
	d.Delay = s.policy.Backoff().Delay(d.Failures)
	s.log.Warn().Str("actor", d.Kind).Str("reason", d.Reason).Int("failures", d.Failures).
		Dur("restart_in", d.Delay).Msg("actor failed, restarting")
	s.notify(d)
	id := d.Child.Id
	s.mu.Lock()
	defer s.mu.Unlock()
	var t clockwork.Timer
	t = s.policy.Clock.AfterFunc(d.Delay, func() {
		s.mu.Lock()
		if s.waiting[id] != t {
			s.mu.Unlock()
			return // cancelled by Shutdown, or replaced
		}
		delete(s.waiting, id)
		s.mu.Unlock()
		system.EventStream.Publish(&actor.SupervisorEvent{Child: d.Child, Reason: d.Cause, Directive: actor.RestartDirective})
		sup.RestartChildren(d.Child)
	})
	s.waiting[id] = t
}

func (s *Strategy) notify(d Decision) {
	s.mu.Lock()
	f := s.observer
	s.mu.Unlock()
	if f != nil {
		f(d)
	}
}
