// Package e2e drives the built binary against the test Teleport server and
// the Fluentd-compatible receiver.
package e2e

import (
	"fmt"
	"os"
	"testing"

	apievents "github.com/gravitational/teleport/api/types/events"

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

// parallelEnv is newEnv for a test that runs beside the others, as most do.
func parallelEnv(t *testing.T) *env {
	t.Parallel()
	return newEnv(t)
}

// seededEnv is parallelEnv with n audit events of seed in its Teleport
// server, as most tests begin.
func seededEnv(t *testing.T, n int, seed int64) (*env, []apievents.AuditEvent) {
	e := parallelEnv(t)
	return e, e.Seed(n, seed)
}
