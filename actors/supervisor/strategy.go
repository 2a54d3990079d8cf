// Package supervisor is the restart policy of every actor in the tree.
//
// protoactor's own strategies either restart with no delay (OneForOne) or
// back off linearly forever (ExponentialBackoff). Ours restarts a failed
// child after a capped, jittered exponential delay and gives up once the
// child has used its restart budget: the child is stopped and its parent sees
// it terminate, which the root turns into an orderly exit with an error.
package supervisor

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/backoff"
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
}

// Default restarts after 100ms, 200ms, ... up to 30s, and gives up after the
// 10th failure within 10 minutes.
var Default = Policy{InitialDelay: 100 * time.Millisecond, MaxDelay: 30 * time.Second, Budget: 10, Window: 10 * time.Minute}

// Decision is what the strategy did about one failure.
type Decision struct {
	Child    *actor.PID
	Kind     string // the child's name without its parent path, e.g. "poller"
	Reason   string
	Cause    any // the panic value
	Failures int // within the window, this one included
	Delay    time.Duration
	GaveUp   bool
}

// Strategy implements actor.SupervisorStrategy.
type Strategy struct {
	policy Policy
	log    zerolog.Logger

	mu       sync.Mutex
	observer func(Decision)
	gaveUp   map[string]Decision // by child PID id
}

// New returns a strategy. Use one per parent: it remembers which children it
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
	return &Strategy{policy: p, log: log, gaveUp: map[string]Decision{}}
}

// Observe registers a function called with every decision (metrics, tests).
func (s *Strategy) Observe(f func(Decision)) {
	s.mu.Lock()
	s.observer = f
	s.mu.Unlock()
}

// GaveUp returns the decision that stopped child, if the strategy stopped it.
func (s *Strategy) GaveUp(child *actor.PID) (Decision, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.gaveUp[child.Id]
	return d, ok
}

// Backoff is the delay before a restart after the n-th failure: full
// jitter on the upper half keeps restarts of many children from lining up
// while never restarting sooner than half the nominal delay.
func (p Policy) Backoff() backoff.Policy {
	return backoff.Policy{Initial: p.InitialDelay, Max: p.MaxDelay, Jitter: true}
}

// HandleFailure implements actor.SupervisorStrategy.
func (s *Strategy) HandleFailure(system *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	rs.Fail()
	d := Decision{Child: child, Kind: Kind(child), Reason: fmt.Sprint(reason), Cause: reason, Failures: rs.NumberOfFailures(s.policy.Window)}
	if d.Failures > s.policy.Budget {
		d.GaveUp = true
		s.mu.Lock()
		s.gaveUp[child.Id] = d
		s.mu.Unlock()
		s.log.Error().Str("actor", d.Kind).Str("reason", d.Reason).Int("failures", d.Failures).
			Dur("window", s.policy.Window).Msg("actor failed too often, stopping it")
		s.notify(d)
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		sup.StopChildren(child)
		return
	}
	d.Delay = s.policy.Backoff().Delay(d.Failures)
	s.log.Warn().Str("actor", d.Kind).Str("reason", d.Reason).Int("failures", d.Failures).
		Dur("restart_in", d.Delay).Msg("actor failed, restarting")
	s.notify(d)
	time.AfterFunc(d.Delay, func() {
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
		sup.RestartChildren(child)
	})
}

func (s *Strategy) notify(d Decision) {
	s.mu.Lock()
	f := s.observer
	s.mu.Unlock()
	if f != nil {
		f(d)
	}
}

// Kind names an actor by the last element of its PID, without protoactor's
// "$n" suffixes: "root/fluentd/connection-3" is "connection".
func Kind(pid *actor.PID) string {
	id := pid.Id
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		id = id[i+1:]
	}
	if i := strings.IndexAny(id, "-$"); i > 0 {
		id = id[:i]
	}
	return id
}
