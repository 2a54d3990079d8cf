// Package e2e drives the built binary against the test Teleport server and
// the Fluentd-compatible receiver.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// binary is the daemon under test: $TEH_BINARY (make test sets it) or a
// fresh build.
var binary string

func TestMain(m *testing.M) {
	b, err := harness.Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	binary = b
	os.Exit(m.Run())
}

type env = harness.Env

func newEnv(t *testing.T) *env { return harness.NewEnv(t, binary) }
