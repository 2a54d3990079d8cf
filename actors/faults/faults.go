// Package faults injects panics into actors, for the tests that prove the
// supervision tree recovers. The actors call it through supervisor.Fault.
// Nothing is armed in a normal run: Inject is an atomic load and returns. Tests arm it with Arm; a binary built with the
// "faults" tag also reads TEH_FAULTS from the environment (see env.go).
package faults

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

var (
	armed atomic.Bool
	mu    sync.Mutex
	left  = map[string]int{} // panics still to inject, by actor kind
	count = map[string]int{} // panics injected, by actor kind
)

// Arm makes the next n ordinary messages received by actors of kind panic.
func Arm(kind string, n int) {
	mu.Lock()
	defer mu.Unlock()
	left[kind] += n
	armed.Store(true)
}

// Armed reports whether any fault is armed, for callers that would build
// a kind's name for nothing.
func Armed() bool { return armed.Load() }

// Injected returns how many panics were injected into actors of kind.
func Injected(kind string) int {
	mu.Lock()
	defer mu.Unlock()
	return count[kind]
}

// Reset disarms everything.
func Reset() {
	mu.Lock()
	defer mu.Unlock()
	clear(left)
	clear(count)
	armed.Store(false)
}

// Inject panics if a panic is armed for kind and msg is an ordinary message
// (not one of the actor's lifecycle messages, which would fault the
// supervisor's own bookkeeping rather than the actor's work). Actors call
// it through supervisor.Fault, which says where.
func Inject(kind string, msg any) {
	if !armed.Load() {
		return
	}
	switch msg.(type) {
	case actor.SystemMessage, actor.AutoReceiveMessage:
		return
	}
	mu.Lock()
	if left[kind] <= 0 {
		mu.Unlock()
		return
	}
	left[kind]--
	count[kind]++
	mu.Unlock()
	panic(fmt.Sprintf("fault injected into %s actor", kind))
}
