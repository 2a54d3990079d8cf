// Package leaktest is the goroutine-leak check every package's TestMain
// runs: the tests pass only if no goroutine outlives them, but for the few
// that end by themselves a little later, listed here once.
package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// throttle is protoactor's dead-letter throttle: it keeps a timer goroutine
// for a second after a message reaches a stopped actor, and ends by itself.
// No goroutine outside protoactor has this top function.
const throttle = "github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"

// Ignore is what Main lets outlive the tests.
func Ignore() []goleak.Option {
	return []goleak.Option{goleak.IgnoreTopFunction(throttle)}
}

// IgnoreIdleConns is Ignore and the goroutines of idle connections, which
// http.Transport and grpc keep until they time out.
func IgnoreIdleConns() []goleak.Option {
	return append(Ignore(),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// Main runs the package's tests, then fails them if a goroutine is left
// but for those in Ignore.
func Main(m *testing.M) { goleak.VerifyTestMain(m, Ignore()...) }

// MainIdleConns is Main for a package whose tests leave idle connections.
func MainIdleConns(m *testing.M) { goleak.VerifyTestMain(m, IgnoreIdleConns()...) }
