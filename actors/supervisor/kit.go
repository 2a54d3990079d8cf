package supervisor

import (
	"context"
	"strings"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
)

// Kit makes the props of every actor in the tree: supervised by one
// Strategy (for the actor's own children), counted by kind in the metrics
// (actors alive, messages in mailboxes) and run by Workers. Any may be nil
// (Workers: protoactor's default dispatcher).
type Kit struct {
	Strategy *Strategy
	Metrics  *metrics.Metrics
	Workers  *Workers
}

// NewKit returns a kit with a fresh strategy whose decisions are counted in
// m, and workers to Close once the actor system is shut down.
func NewKit(p Policy, log zerolog.Logger, m *metrics.Metrics) Kit {
	s := New(p, log)
	s.Observe(func(d Decision) { m.CountDecision(d.Kind, d.GaveUp, d.Cause) })
	return Kit{Strategy: s, Metrics: m, Workers: NewWorkers(DefaultThroughput)}
}

// Props returns the props of an actor of kind.
func (k Kit) Props(kind string, producer actor.Producer) *actor.Props {
	return actor.PropsFromProducer(producer, k.Options(kind)...)
}

// Options are the props options of an actor of kind.
func (k Kit) Options(kind string) []actor.PropsOption {
	var opts []actor.PropsOption
	if k.Metrics != nil {
		opts = append(opts, counted(k.Metrics.ActorsLive.WithLabelValues(kind), k.Metrics.MailboxDepth.WithLabelValues(kind))...)
	}
	if k.Strategy != nil {
		opts = append(opts, actor.WithSupervisor(k.Strategy))
	}
	if k.Workers != nil {
		opts = append(opts, actor.WithDispatcher(k.Workers))
	}
	return opts
}

// Spawn starts a child of kind that has siblings of its kind (connections,
// players, chunk readers): it is named kind-$<n>, unique in the actor
// system, and Kind gives kind back. A singleton child is spawned with its
// kind as its name.
func Spawn(ctx actor.SpawnerContext, props *actor.Props, kind string) *actor.PID {
	return ctx.SpawnPrefix(props, kind+"-")
}

// Unnamed is the kind of an actor spawned without a name.
const Unnamed = "unnamed"

// Kind names an actor by the name it was spawned with, without its
// instance: "root/pool/connection-3" and "root/sessions/player-$1b" are
// "connection" and "player", "root/poller" is "poller". Actors spawned
// without a name are all Unnamed, so that the kinds in metric labels are
// bounded by the names in the code.
func Kind(pid *actor.PID) string {
	name := pid.Id
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if strings.HasPrefix(name, "$") {
		return Unnamed
	}
	if i := strings.LastIndexByte(name, '-'); i > 0 && instance(name[i+1:]) {
		name = name[:i]
	}
	return name
}

// instance is true for what follows a kind in a name: a number, or the ID
// protoactor generates.
func instance(s string) bool {
	if strings.HasPrefix(s, "$") {
		return true
	}
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// counted returns the props options that count an actor in live and the
// ordinary messages in its mailbox in depth.
func counted(live, depth prometheus.Gauge) []actor.PropsOption {
	return []actor.PropsOption{
		actor.WithMailbox(actor.Unbounded(mailboxGauge{depth})),
		actor.WithReceiverMiddleware(func(next actor.ReceiverFunc) actor.ReceiverFunc {
			return func(ctx actor.ReceiverContext, env *actor.MessageEnvelope) {
				// A restart ends one incarnation (Restarting) and
				// starts another (Started) without a Stopped.
				switch env.Message.(type) {
				case *actor.Started:
					live.Inc()
				case *actor.Stopped, *actor.Restarting:
					live.Dec()
				}
				if ordinary(env.Message) {
					// The mailbox never counts out a message that
					// panics: do it here, and let the panic go on to
					// the supervisor.
					defer func() {
						if r := recover(); r != nil {
							depth.Dec()
							panic(r)
						}
					}()
				}
				next(ctx, env)
			}
		}),
	}
}

// mailboxGauge counts ordinary messages in when posted and out when
// processed. System messages, and the mailbox's own suspend and resume around
// a failure, are left out.
type mailboxGauge struct{ g prometheus.Gauge }

func ordinary(msg any) bool {
	switch msg.(type) {
	case actor.SystemMessage, actor.AutoReceiveMessage, *actor.SuspendMailbox, *actor.ResumeMailbox:
		return false
	}
	return true
}

func (mailboxGauge) MailboxStarted() {}
func (b mailboxGauge) MessagePosted(msg any) {
	if ordinary(msg) {
		b.g.Inc()
	}
}
func (b mailboxGauge) MessageReceived(msg any) {
	if ordinary(msg) {
		b.g.Dec()
	}
}
func (mailboxGauge) MailboxEmpty() {}

// CountUndelivered counts in m the messages to actors that no longer
// exist, which the system publishes on its event stream as dead letters
// (protoactor's word; nothing to do with the events in dead-letters.jsonl).
func CountUndelivered(system *actor.ActorSystem, m *metrics.Metrics) {
	system.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*actor.DeadLetterEvent); ok {
			m.UndeliveredMessages.Inc()
		}
	})
}

// Task is a goroutine with an owner: an actor's fetcher, stream reader or
// sender, which the actor starts with Go and ends with Stop when it stops
// or restarts, so that no goroutine outlives the incarnation that started
// it (or the daemon's identity refresh, which Run ends the same way).
type Task struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Go runs f in a goroutine, with a context that Stop cancels.
func Go(parent context.Context, f func(ctx context.Context)) *Task {
	ctx, cancel := context.WithCancel(parent)
	t := &Task{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		defer cancel()
		f(ctx)
	}()
	return t
}

// Stop cancels the task's context and waits for it to return. It does
// nothing on a nil Task, and may be called more than once.
func (t *Task) Stop() {
	if t == nil {
		return
	}
	t.cancel()
	<-t.done
}

// Done is closed once the task has returned.
func (t *Task) Done() <-chan struct{} { return t.done }
