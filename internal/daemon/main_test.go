package daemon

import (
	"testing"

	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
)

// Every goroutine the daemon starts has an owner that ends it: the actors'
// tasks, the identity refresh, the progress reports, the metrics server.
func TestMain(m *testing.M) { leaktest.MainIdleConns(m) }
