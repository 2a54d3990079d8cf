// Package root is the top of the actor tree: it starts its children in
// order, supervises them with the shared restart policy, stops them in
// reverse order, and turns a child that used up its restart budget into an
// orderly exit with an error (so that systemd or Kubernetes restarts the
// process, which resumes from the checkpoint).
package root

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/messages"
)

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
	// Bind receives the child's PID once spawned, so later children can be
	// given the PIDs of earlier ones.
	Bind func(*actor.PID)
}

// Spec configures the root.
type Spec struct {
	// Children returns the children; it is called on every start so that
	// Bind functions see fresh PIDs.
	Children func() []Child
	// DrainTimeout bounds the wait for in-flight work at shutdown.
	DrainTimeout time.Duration
	// OnDrainTimeout runs when the wait ran out (it aborts sends in progress).
	OnDrainTimeout func()
	Strategy       *supervisor.Strategy
	Log            zerolog.Logger
	// Done receives the outcome once every child has stopped: nil for a
	// clean stop.
	Done chan<- error
}

// ErrGaveUp wraps the error reported when a child exhausted its restart
// budget.
var ErrGaveUp = errors.New("actor gave up")

type drainTimeout struct{}

// Root is the actor.
type Root struct {
	spec     Spec
	children []Child
	pids     map[string]*actor.PID
	alive    map[string]bool

	stopping     bool
	drains       int             // Drain requests not yet answered
	finished     map[string]bool // children that reported CaughtUp
	caughtErr    error           // what they reported left undone
	caughtEvents uint64          // audit events acknowledged, as the audit reader reported
	stopIdx      int             // children[stopIdx:] are still to be stopped, in reverse
	result       error
	timer        *time.Timer
	reported     bool
}

// Props returns the root's props, with spec.Strategy supervising its
// children.
func Props(spec Spec) *actor.Props {
	if spec.DrainTimeout <= 0 {
		spec.DrainTimeout = 10 * time.Second
	}
	return actor.PropsFromProducer(func() actor.Actor { return &Root{spec: spec} },
		actor.WithSupervisor(spec.Strategy))
}

// Receive implements actor.Actor.
func (r *Root) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.start(ctx)
	case *messages.Shutdown:
		r.shutdown(ctx, m.Reason, nil)
	case *messages.CaughtUp:
		if !r.finished[m.Name] { // once per child, even if it restarts and reports again
			r.caughtErr = errors.Join(r.caughtErr, m.Err)
		}
		r.finished[m.Name] = true
		r.caughtEvents = max(r.caughtEvents, m.Events) // only the audit reader counts
		for _, c := range r.children {
			if c.Finishes && !r.finished[c.Name] {
				return
			}
		}
		r.spec.Log.Info().Uint64("audit_events", r.caughtEvents).Msg("all events up to now are delivered; exiting (--exit-on-last-event)")
		// What was left undone is the exit status, but the children still
		// drain as in any orderly stop.
		if r.result == nil {
			r.result = r.caughtErr
		}
		r.shutdown(ctx, "caught up", nil)
	case *messages.Drained:
		if r.drains--; r.drains == 0 && r.timer != nil {
			r.timer.Stop()
			r.timer = nil
			r.stopNext(ctx)
		}
	case *drainTimeout:
		if r.timer != nil {
			r.timer = nil
			r.spec.Log.Warn().Dur("timeout", r.spec.DrainTimeout).Msg("in-flight events did not settle in time; they are resent on the next start")
			if r.spec.OnDrainTimeout != nil {
				r.spec.OnDrainTimeout()
			}
			r.stopNext(ctx)
		}
	case *actor.Terminated:
		r.onTerminated(ctx, m.Who)
	case *actor.Stopping, *actor.Restarting:
		if r.timer != nil {
			r.timer.Stop()
		}
	case *actor.Stopped:
		r.report()
	}
}

func (r *Root) start(ctx actor.Context) {
	r.children = r.spec.Children()
	r.pids = map[string]*actor.PID{}
	r.alive = map[string]bool{}
	r.finished = map[string]bool{}
	for _, c := range r.children {
		pid, err := ctx.SpawnNamed(c.Props, c.Name)
		if err != nil {
			r.shutdown(ctx, "start failed", fmt.Errorf("start %s: %w", c.Name, err))
			return
		}
		r.pids[c.Name], r.alive[c.Name] = pid, true
		if c.Bind != nil {
			c.Bind(pid)
		}
	}
	r.stopIdx = len(r.children)
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
		}
		r.spec.Log.Error().Err(err).Msg("stopping the pipeline")
		r.shutdown(ctx, "child gave up", err)
		return
	}
	if r.timer == nil { // not draining: continue the stop sequence
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
	for _, c := range r.children {
		if c.Drain && r.alive[c.Name] && err == nil {
			ctx.Request(r.pids[c.Name], &messages.Drain{})
			r.drains++
		}
	}
	if r.drains == 0 {
		r.stopNext(ctx)
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	r.timer = time.AfterFunc(r.spec.DrainTimeout, func() { root.Send(self, &drainTimeout{}) })
}

// stopNext stops the last child still alive; each Terminated calls it again
// until none is left, then the root stops itself. From the first call on,
// no child is restarted: the restarts still waiting are cancelled.
func (r *Root) stopNext(ctx actor.Context) {
	r.spec.Strategy.Shutdown()
	for r.stopIdx > 0 {
		c := r.children[r.stopIdx-1]
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
	if r.reported || r.spec.Done == nil {
		return
	}
	r.reported = true
	r.spec.Done <- r.result
}

// ErrStuck is returned by Await when the tree did not stop within its grace.
var ErrStuck = errors.New("the actor tree did not stop in time")

// Await waits until the root reports on done (finished is true) or stop is
// closed; then it asks the root to shut down and waits up to grace for it.
func Await(system *actor.ActorSystem, pid *actor.PID, done <-chan error, stop <-chan struct{}, grace time.Duration) (finished bool, err error) {
	select {
	case err := <-done:
		return true, err
	case <-stop:
	}
	system.Root.Send(pid, &messages.Shutdown{Reason: "stop"})
	select {
	case err := <-done:
		return false, err
	case <-time.After(grace):
		return false, ErrStuck
	}
}
