package e2e

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

func teleportGenerate(n int, start time.Time, seed int64) []apievents.AuditEvent {
	return teleportsrv.GenerateAuditEvents(n, start, time.Millisecond, seed+1000)
}

// killAtRandom starts the daemon `rounds` times with args and kill -9s each
// run after a random wait of minMs to minMs+spanMs milliseconds (a run that
// finished first is not killed), and returns the kills made. The seed is
// logged for replays.
func killAtRandom(t *testing.T, e *env, args []string, rounds, minMs, spanMs int) int {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	kills := 0
	for range rounds {
		p := harness.Run(t, binary, nil, e.Args(args...)...)
		time.Sleep(time.Duration(minMs+rng.IntN(spanMs)) * time.Millisecond)
		if p.Exited() {
			continue // finished before the kill
		}
		p.Signal(syscall.SIGKILL)
		p.Wait(t, 10*time.Second)
		kills++
		t.Logf("kill %d: %d audit events received", kills, e.Audit())
	}
	return kills
}

// userLogin is a user.login event of user at t as Teleport writes it: a
// success, or a failure with invalid credentials.
func userLogin(id, user string, t time.Time, success bool) apievents.AuditEvent {
	code, status := "T1000I", apievents.Status{Success: true}
	if !success {
		code, status = "T1000W", apievents.Status{Success: false, Error: "invalid credentials"}
	}
	return &apievents.UserLogin{
		Metadata:     apievents.Metadata{ID: id, Type: "user.login", Code: code, Time: t.UTC(), ClusterName: teleportsrv.DefaultClusterName},
		UserMetadata: apievents.UserMetadata{User: user, Login: "root"},
		Status:       status,
		Method:       "local",
	}
}

// failedLogin is the i-th user.login failure of user, at t.
func failedLogin(user string, i int, t time.Time) apievents.AuditEvent {
	return userLogin(fmt.Sprintf("fail-%s-%d", user, i), user, t, false)
}
