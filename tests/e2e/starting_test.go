package e2e

import (
	"net/http"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// A daemon waiting at start for Fluentd works as designed: /healthz is 200
// for as long as the wait lasts (a liveness probe must not restart it in a
// loop while Fluentd is down), /readyz is 503 naming what it waits for,
// and the status command says it is starting. Once Fluentd is up it is
// ready and delivers.
func TestWaitingForFluentdAtStartIsAliveNotReady(t *testing.T) {
	e, evs := seededEnv(t, 20, 71)
	e.Fluentd.Down(0) // until Up
	addr := harness.FreeAddr(t)
	p := harness.Run(t, binary, nil, e.Args("--health-addr", addr)...)
	url := e.Fluentd.URL() + "/test.log"
	waiting := "waiting for Fluentd at " + url
	harness.WaitFor(t, 30*time.Second, "/readyz naming Fluentd", func() bool {
		code, reason := harness.Probe(addr, "/readyz")
		return code == http.StatusServiceUnavailable && reason == "starting: "+waiting
	})
	// A second retry later: past the first wait, still alive.
	harness.WaitFor(t, 30*time.Second, "a second attempt", func() bool {
		return len(regexp.MustCompile(`fluentd is unreachable; waiting for it`).FindAllString(p.Output(), -1)) >= 2
	})
	code, reason := harness.Probe(addr, "/healthz")
	require.Equal(t, http.StatusOK, code, reason)
	require.Equal(t, "starting: "+waiting, reason)
	require.Contains(t, statusOf(t, e, false, nil), "daemon        starting: "+waiting+" (state ")
	var r status.Report
	statusOf(t, e, true, &r)
	require.True(t, r.Running)
	require.Equal(t, waiting, r.Starting)
	// The wait's log line says its delay with a unit.
	require.Regexp(t, `"message":"fluentd is unreachable; waiting for it"`, p.Output())
	require.Regexp(t, `"retry_in":"[0-9.]+(ms|s)"`, p.Output())

	e.Fluentd.Up()
	harness.WaitFor(t, time.Minute, "ready", func() bool { code, _ := harness.Probe(addr, "/readyz"); return code == http.StatusOK })
	harness.WaitFor(t, 30*time.Second, "the events", func() bool { return harness.TallyAudit(e.Fluentd, evs, nil).Lost == 0 })
	var after status.Report
	statusOf(t, e, true, &after)
	require.True(t, after.Running)
	require.Empty(t, after.Starting)
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second), p.Output())
}

// requireNothingStored checks that the daemon stored nothing under
// --storage: the state file, taken at start, holds no start time.
func requireNothingStored(t *testing.T, e *env) {
	t.Helper()
	dir := persistence.Dir(e.Storage, e.TeleportAddr)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return
	}
	st, err := persistence.OpenReadOnly(dir, time.Second)
	require.NoError(t, err)
	defer st.Close()
	_, ok, err := st.StartTime()
	require.NoError(t, err)
	require.False(t, ok, "a start time was stored")
}
