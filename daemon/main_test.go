package daemon

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the daemon starts has an owner that ends it: the actors'
// tasks, the identity refresh, the progress reports, the metrics server.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		// http.Transport and grpc keep idle connections' goroutines until
		// they time out.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
