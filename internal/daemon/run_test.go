package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fdfwd/teleport-event-handler/actors/faults"
	"github.com/fdfwd/teleport-event-handler/internal/daemon"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// TestFailingActorsAreRestartedAndCounted runs the whole tree in process
// with panics injected into several actor kinds: every event still arrives
// and each restart shows in the metrics.
func TestFailingActorsAreRestartedAndCounted(t *testing.T) {
	t.Cleanup(faults.Reset)
	pki := testpki.New(t)
	tp := teleportsrv.StartTLS(t, pki)
	fd, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)})
	require.NoError(t, err)
	defer fd.Close()

	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	evs := teleportsrv.GenerateAuditEvents(500, start, time.Second, 40)
	require.NoError(t, tp.AddEvents(evs...))
	cfg := startConfig(t, pki, tp.Addr(), fd.URL(), map[string]string{
		"start-time": start.Format(time.RFC3339), "exit-on-last-event": "true", "timeout": "100ms",
		// The identity refresh runs, and is joined when Run returns.
		"teleport-refresh-enabled": "true", "teleport-refresh-interval": "50ms",
	})

	faults.Arm("poller", 2)
	faults.Arm("connection", 3)
	faults.Arm("checkpoint", 1)
	m := metrics.New()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// What runs now is the test servers'; whatever Run starts, it ends
	// before it returns (not when ctx is cancelled, later).
	running := goleak.IgnoreCurrent()
	// The generated session.upload events have no recordings on the test
	// server: they are given up, which the run reports as left undone.
	err = daemon.Run(ctx, cfg, zerolog.Nop(), daemon.Options{Metrics: m})
	require.ErrorIs(t, err, daemon.ErrIncomplete)
	require.ErrorContains(t, err, "session recording(s) given up")
	require.NotContains(t, err.Error(), "dead-lettered")
	goleak.VerifyNone(t, append(leaktest.IgnoreIdleConns(), running)...)

	require.Greater(t, testutil.ToFloat64(m.IdentityExpiresAt), float64(time.Now().Unix()), "the identity's expiry is reported")
	for kind, n := range map[string]int{"poller": 2, "connection": 3, "checkpoint": 1} {
		require.Equal(t, n, faults.Injected(kind), kind)
		require.EqualValues(t, n, testutil.ToFloat64(m.ActorRestarts.WithLabelValues(kind, "panic")), kind)
	}
	got := fd.CountByUID()
	for _, ev := range evs {
		require.GreaterOrEqual(t, got[ev.GetID()], 1, "event %s lost", ev.GetID())
	}
}
