package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

func TestMetricsMatchWhatFluentdReceived(t *testing.T) {
	e, evs := seededEnv(t, 600, 30)
	e.Fluentd.FailFirst(7, 503)
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == evs[100].GetID() })
	addr := harness.FreeAddr(t)
	p := harness.Run(t, binary, nil, e.Args("--metrics-addr", addr, "--skip-event-types", "user.login")...)
	harness.WaitFor(t, 30*time.Second, "metrics", func() bool { code, _ := harness.Probe(addr, "/healthz"); return code == http.StatusOK })

	// Let it catch up and settle: the live window is polled again and again.
	sessionEvents := 0
	for _, rec := range e.Recordings {
		for _, ev := range rec {
			if !defaultSkip[ev.GetType()] {
				sessionEvents++
			}
		}
	}
	skipped := 0
	for _, ev := range evs {
		if ev.GetType() == "user.login" {
			skipped++
		}
	}
	var m map[string]float64
	harness.WaitFor(t, 30*time.Second, "every event counted", func() bool {
		m = harness.Scrape(addr)
		return m[`teleport_event_handler_events_sent_total{stream="session"}`] == float64(sessionEvents) &&
			m[`teleport_event_handler_sessions_finished_total`] == float64(len(e.Recordings)) &&
			m[`teleport_event_handler_events_sent_total{stream="audit"}`]+1 == float64(len(evs)-skipped)
	})
	require.Equal(t, float64(e.Audit()), m[`teleport_event_handler_events_sent_total{stream="audit"}`])
	require.EqualValues(t, 1, m[`teleport_event_handler_events_dead_lettered_total{stream="audit"}`])
	require.EqualValues(t, skipped, m[`teleport_event_handler_events_skipped_total{reason="type",stream="audit"}`])
	require.EqualValues(t, len(evs), m[`teleport_event_handler_events_fetched_total{stream="audit"}`])
	retried := m[`teleport_event_handler_events_retried_total{stream="audit"}`] + m[`teleport_event_handler_events_retried_total{stream="session"}`]
	require.EqualValues(t, 7, retried)
	require.EqualValues(t, 10, m[`teleport_event_handler_fluentd_connections`])
	require.EqualValues(t, 1, m[`teleport_event_handler_actors{kind="poller"}`])
	require.EqualValues(t, 10, m[`teleport_event_handler_actors{kind="connection"}`])
	require.Zero(t, m[`teleport_event_handler_actors{kind="player"}`], "finished players are gone")
	require.Zero(t, m[`teleport_event_handler_sends_in_flight`])
	require.Positive(t, m[`teleport_event_handler_checkpoint_writes_total{result="ok"}`])
	require.Greater(t, m[`teleport_event_handler_acked_event_timestamp_seconds`], float64(e.T0.Unix()))
	build := 0
	for k, v := range m {
		if strings.HasPrefix(k, `teleport_event_handler_build_info{goversion="go`) && strings.Contains(k, `,version="`) && v == 1 {
			build++
		}
	}
	require.Equal(t, 1, build, "one build_info series, at 1")
	// Caught up with a history an hour old, and nothing new: no lag (the
	// newest delivered event is old, but nothing waits), and one "caught
	// up" line after the progress lines.
	harness.WaitFor(t, 30*time.Second, "no lag", func() bool { return harness.Scrape(addr)[`teleport_event_handler_lag_seconds`] == 0 })
	harness.WaitFor(t, 30*time.Second, "the caught-up line", func() bool {
		return strings.Contains(p.Output(), "caught up: every audit event read so far is delivered")
	})
	require.Positive(t, m[`teleport_event_handler_send_duration_seconds_count`])
	code, reason := harness.Probe(addr, "/readyz")
	require.Equal(t, http.StatusOK, code, reason)

	p.Signal(15)
	require.Equal(t, 0, p.Wait(t, 20*time.Second))
	out := p.Output()
	caught := strings.Index(out, "caught up: every audit event read so far is delivered")
	require.Positive(t, caught)
	require.NotContains(t, out[caught:], `"message":"progress"`, "progress lines once caught up")
}

func TestReadyzFollowsTeleport(t *testing.T) {
	e := parallelEnv(t)
	e.Seed(20, 31)
	addr := harness.FreeAddr(t)
	p := harness.Run(t, binary, nil, e.Args("--metrics-addr", addr, "--ready-grace", "3s")...)
	harness.WaitFor(t, 30*time.Second, "ready", func() bool { code, _ := harness.Probe(addr, "/readyz"); return code == http.StatusOK })

	e.Teleport.FailNext("GetUnstructuredEvents", 1000, codes.Unavailable)
	harness.WaitFor(t, 30*time.Second, "unready", func() bool { code, _ := harness.Probe(addr, "/readyz"); return code == http.StatusServiceUnavailable })
	_, reason := harness.Probe(addr, "/readyz")
	require.Contains(t, reason, "teleport")
	code, _ := harness.Probe(addr, "/healthz")
	require.Equal(t, http.StatusOK, code, "alive while Teleport is away")
	m := harness.Scrape(addr)
	require.Positive(t, m[`teleport_event_handler_teleport_errors_total{code="connection_problem",method="SearchUnstructuredEvents"}`], fmt.Sprint(m))

	e.Teleport.FailNext("GetUnstructuredEvents", 0, codes.OK)
	// The poller backs off from 1 s doubling; allow for a few retries.
	harness.WaitFor(t, 60*time.Second, "ready again", func() bool { code, _ := harness.Probe(addr, "/readyz"); return code == http.StatusOK })
	p.Signal(15)
	require.Equal(t, 0, p.Wait(t, 20*time.Second))
}

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
