package daemon_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/daemon"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// A daemon waiting at start for Fluentd is alive, not ready, and answers
// the status command from the start, saying what it waits for; a stop
// meanwhile is clean.
func TestWaitingForFluentdIsAliveAndSaysSo(t *testing.T) {
	pki := testpki.New(t)
	tp := teleportsrv.StartTLS(t, pki)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close()) // nobody listens there
	cfg := startConfig(t, pki, tp.Addr(), "https://"+ln.Addr().String(), nil)

	m := metrics.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, cfg, zerolog.Nop(), daemon.Options{Metrics: m}) }()

	want := "waiting for Fluentd at " + cfg.Fluentd.URL
	require.Eventually(t, func() bool { what, _ := m.Health.WaitingFor(); return what == want }, 20*time.Second, 10*time.Millisecond)
	live, why := m.Health.Live()
	require.True(t, live, why)
	ready, why := m.Health.Ready()
	require.False(t, ready)
	require.Equal(t, "starting: "+want, why)

	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	r, err := status.Read(rctx, persistence.Dir(cfg.Storage, tp.Addr()), time.Now())
	require.NoError(t, err)
	require.True(t, r.Running)
	require.Equal(t, want, r.Starting)
	require.Equal(t, 0, *r.Recordings.Active, "nothing streams before the tree runs")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "a stop while waiting is clean")
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the stop")
	}
}
