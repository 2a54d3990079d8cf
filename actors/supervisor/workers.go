package supervisor

import "sync"

// DefaultThroughput is how many messages an actor handles in one run of
// its mailbox before it lets others run: protoactor's default.
const DefaultThroughput = 300

// Workers is protoactor's default dispatcher (a mailbox with messages runs
// on a goroutine, Throughput of them a run) on goroutines kept between
// runs. protoactor starts a new goroutine for each run, and each grows
// its stack again to the depth of the actor's work: 10 % of the daemon's
// CPU over the forward protocol went to growing stacks. A run goes to an
// idle worker when there is one, else to a new goroutine, which then
// waits for more until Close.
type Workers struct {
	work       chan func()
	quit       chan struct{}
	close      sync.Once
	throughput int
}

// NewWorkers returns a dispatcher of throughput messages a run.
func NewWorkers(throughput int) *Workers {
	return &Workers{work: make(chan func()), quit: make(chan struct{}), throughput: throughput}
}

// Schedule implements actor.Dispatcher.
func (w *Workers) Schedule(fn func()) {
	select {
	case w.work <- fn: // an idle worker takes it
	default:
		go w.run(fn)
	}
}

func (w *Workers) run(fn func()) {
	for {
		fn()
		select {
		case fn = <-w.work:
		case <-w.quit:
			return
		}
	}
}

// Throughput implements actor.Dispatcher.
func (w *Workers) Throughput() int { return w.throughput }

// Close ends the idle workers, and each busy one when its run ends: once
// the actor system is shut down, none is left.
func (w *Workers) Close() { w.close.Do(func() { close(w.quit) }) }
