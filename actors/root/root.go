// Package root is the top of the actor tree: it starts its children in
// order, supervises them with the shared restart policy, stops them in
// reverse order, and turns a child that used up its restart budget into an
// orderly exit with an error (so that systemd or Kubernetes restarts the
// process, which resumes from the checkpoint).
//
// The children are a fixed list, and each is named: a child's PID is known
// from its name (PID) before anything is spawned, so siblings are wired to
// each other by name.
package root

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/messages"
)

// Name is the root's name in the actor system.
const Name = "root"

// PID is the PID of the root's child called name, whether it runs yet or
// not.
func PID(system *actor.ActorSystem, name string) *actor.PID {
	return actor.NewPID(system.Address(), Name+"/"+name)
}

// Child is one child of the root, started in list order and stopped in
// reverse order.
type Child struct {
	Name  string
	Props *actor.Props
	// Drain marks the child that is asked to settle its in-flight work
	// (messages.Drain) before anything is stopped.
	Drain bool
	// Finishes marks a child that reports messages.CaughtUp with
	// --exit-on-last-event; the root stops once all such children have.
	Finishes bool
}

// Spec configures the root.
type Spec struct {
	Children []Child
	// DrainTimeout bounds the wait for in-flight work at shutdown.
	DrainTimeout time.Duration
	// OnDrainTimeout runs when the wait ran out (it aborts sends in progress).
	OnDrainTimeout func()
	Strategy       *supervisor.Strategy
	Clock          clockwork.Clock
	Log            zerolog.Logger
}

// DefaultDrainTimeout is the wait for in-flight work at shutdown when
// Spec.DrainTimeout is zero.
const DefaultDrainTimeout = 10 * time.Second

// ErrGaveUp wraps the error reported when a child exhausted its restart
// budget.
var ErrGaveUp = errors.New("actor gave up")

// ErrLeftUndone wraps what the children that finish (--exit-on-last-event)
// reported left undone: the stream caught up, but not everything in it was
// delivered (chunks parked, recordings given up, events dead-lettered).
var ErrLeftUndone = errors.New("caught up, but not everything was delivered")

// ErrStuck is returned by Wait when the tree did not stop within its grace.
var ErrStuck = errors.New("the actor tree did not stop in time")

// Tree is a running root.
type Tree struct {
	system *actor.ActorSystem
	pid    *actor.PID
	done   chan error
}

// Start spawns the root of spec in system, which starts the children.
func Start(system *actor.ActorSystem, spec Spec) (*Tree, error) {
	if spec.DrainTimeout <= 0 {
		spec.DrainTimeout = DefaultDrainTimeout
	}
	t := &Tree{system: system, done: make(chan error, 1)}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &Root{spec: spec, done: t.done, drain: timer.Timer{Clock: spec.Clock}}
	}, actor.WithSupervisor(spec.Strategy))
	pid, err := system.Root.SpawnNamed(props, Name)
	if err != nil {
		return nil, fmt.Errorf("start actor tree: %w", err)
	}
	t.pid = pid
	return t, nil
}

// PID is the root's.
func (t *Tree) PID() *actor.PID { return t.pid }

// Done receives the outcome once every child has stopped: nil for a clean
// stop.
func (t *Tree) Done() <-chan error { return t.done }

// Wait waits until the tree stops on its own (finished is true: caught up
// with --exit-on-last-event, or a child gave up) or stop is closed; then it
// asks the root to stop in order and waits up to grace for it.
func (t *Tree) Wait(stop <-chan struct{}, grace time.Duration) (finished bool, err error) {
	select {
	case err := <-t.done:
		return true, err
	case <-stop:
	}
	t.system.Root.Send(t.pid, &messages.Shutdown{Reason: "stop"})
	select {
	case err := <-t.done:
		return false, err
	case <-time.After(grace):
		return false, ErrStuck
	}
}

type drainTimeout struct{}

// Root is the actor.
type Root struct {
	spec  Spec
	done  chan<- error
	pids  map[string]*actor.PID
	alive map[string]bool

	stopping     bool
	drains       int             // Drain requests not yet answered
	drain        timer.Timer     // bounds the drain
	finished     map[string]bool // children that reported CaughtUp
	caughtErr    error           // what they reported left undone
	caughtEvents uint64          // audit events acknowledged, as the audit reader reported
	stopIdx      int             // children[stopIdx:] are still to be stopped, in reverse
	result       error
	reported     bool
}

// Receive implements actor.Actor.
func (r *Root) Receive(ctx actor.Context) {
	switch m := timer.Message(ctx).(type) {
	case *actor.Started:
		r.start(ctx)
	case *messages.Shutdown:
		r.shutdown(ctx, m.Reason, nil)
	case *messages.CaughtUp:
		r.caughtUp(ctx, m)
	case *messages.Drained:
		if r.drains--; r.drains == 0 && r.drain.Armed() {
			r.drain.Stop()
			r.stopNext(ctx)
		}
	case *drainTimeout:
		r.spec.Log.Warn().Dur("timeout", r.spec.DrainTimeout).Msg("in-flight events did not settle in time; they are resent on the next start")
		if r.spec.OnDrainTimeout != nil {
			r.spec.OnDrainTimeout()
		}
		r.stopNext(ctx)
	case *actor.Terminated:
		r.onTerminated(ctx, m.Who)
	case *actor.Stopping, *actor.Restarting:
		r.drain.Stop()
	case *actor.Stopped:
		r.report()
	}
}

func (r *Root) start(ctx actor.Context) {
	r.pids, r.alive, r.finished = map[string]*actor.PID{}, map[string]bool{}, map[string]bool{}
	for _, c := range r.spec.Children {
		pid, err := ctx.SpawnNamed(c.Props, c.Name)
		if err != nil {
			r.shutdown(ctx, "start failed", fmt.Errorf("start %s: %w", c.Name, err))
			return
		}
		r.pids[c.Name], r.alive[c.Name] = pid, true
	}
	r.stopIdx = len(r.spec.Children)
}

// caughtUp records a child that finished (--exit-on-last-event); once all
// that finish have, the tree stops.
func (r *Root) caughtUp(ctx actor.Context, m *messages.CaughtUp) {
	if !r.finished[m.Name] { // once per child, even if it restarts and reports again
		r.caughtErr = errors.Join(r.caughtErr, m.Err)
	}
	r.finished[m.Name] = true
	r.caughtEvents = max(r.caughtEvents, m.Events) // only the audit reader counts
	for _, c := range r.spec.Children {
		if c.Finishes && !r.finished[c.Name] {
			return
		}
	}
	r.spec.Log.Info().Uint64("audit_events", r.caughtEvents).Msg("caught up with every stream; stopping (--exit-on-last-event)")
	// What was left undone is the exit status, but the children still
	// drain as in any orderly stop.
	if r.result == nil && r.caughtErr != nil {
		r.result = fmt.Errorf("%w: %w", ErrLeftUndone, r.caughtErr)
	}
	r.shutdown(ctx, "caught up", nil)
}

func (r *Root) onTerminated(ctx actor.Context, who *actor.PID) {
	name := ""
	for n, pid := range r.pids {
		if pid.Equal(who) {
			name = n
		}
	}
	if name == "" || !r.alive[name] {
		return
	}
	r.alive[name] = false
	if !r.stopping {
		err := fmt.Errorf("%w: %s stopped unexpectedly", ErrGaveUp, name)
		if d, ok := r.spec.Strategy.GaveUp(who); ok {
			err = fmt.Errorf("%w: %s failed %d times within the restart window (last: %s)", ErrGaveUp, name, d.Failures, d.Reason)
			if cause, isErr := d.Cause.(error); isErr && d.Unrecoverable {
				err = fmt.Errorf("%w: %s: %w", ErrGaveUp, name, cause) // the cause names the fix
			}
		}
		r.spec.Log.Error().Err(err).Msg("stopping the pipeline")
		r.shutdown(ctx, "child gave up", err)
		return
	}
	if !r.drain.Armed() { // not draining: continue the stop sequence
		r.stopNext(ctx)
	}
}

// shutdown starts the stop sequence: drain, then stop children in reverse.
func (r *Root) shutdown(ctx actor.Context, reason string, err error) {
	if r.result == nil {
		r.result = err
	}
	if r.stopping {
		return
	}
	r.stopping = true
	r.spec.Log.Info().Str("reason", reason).Msg("stopping")
	for _, c := range r.spec.Children {
		if c.Drain && r.alive[c.Name] && err == nil {
			ctx.Request(r.pids[c.Name], &messages.Drain{})
			r.drains++
		}
	}
	if r.drains == 0 {
		r.stopNext(ctx)
		return
	}
	r.drain.After(ctx, r.spec.DrainTimeout, &drainTimeout{})
}

// stopNext stops the last child still alive; each Terminated calls it again
// until none is left, then the root stops itself. From the first call on,
// no child is restarted: the restarts still waiting are cancelled.
func (r *Root) stopNext(ctx actor.Context) {
	r.spec.Strategy.Shutdown()
	for r.stopIdx > 0 {
		c := r.spec.Children[r.stopIdx-1]
		if !r.alive[c.Name] {
			r.stopIdx--
			continue
		}
		ctx.Stop(r.pids[c.Name])
		return
	}
	ctx.Stop(ctx.Self())
}

func (r *Root) report() {
	if r.reported {
		return
	}
	r.reported = true
	r.done <- r.result
}
