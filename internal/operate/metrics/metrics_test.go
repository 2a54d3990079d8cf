package metrics

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/syncbuf"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

func TestReadinessFollowsTheParts(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &Health{now: func() time.Time { return now }}
	ok, reason := h.Ready()
	require.False(t, ok)
	require.Contains(t, reason, "starting")

	h.SetRunning(true)
	ok, _ = h.Ready()
	require.True(t, ok)

	// Teleport failing: one failed call is ridden out like a short Fluentd
	// outage, and the health of several readers is combined: another
	// reader's success does not hide a reader that keeps failing.
	h.TeleportCall("export-reader-1", errors.New("connection refused"))
	ok, _ = h.Ready()
	require.True(t, ok, "a single failed Teleport call")
	now = now.Add(StuckAfter + time.Second)
	h.TeleportCall("export-reader-2", nil)
	ok, reason = h.Ready()
	require.False(t, ok)
	require.Contains(t, reason, "teleport: every call has failed for 1m1s")
	require.NotContains(t, reason, "connection refused", "the error is in the log")
	h.TeleportCall("export-reader-1", nil)
	ok, _ = h.Ready()
	require.True(t, ok)
	// A reader that stops is forgotten, failing or not.
	h.TeleportCall("export-reader-3", errors.New("deadline exceeded"))
	now = now.Add(StuckAfter + time.Second)
	h.TeleportDone("export-reader-3")
	ok, _ = h.Ready()
	require.True(t, ok)

	// The receiver refusing service: not ready at once, naming the status,
	// never the receiver's answer or its address.
	h.FluentdRefused(403, false)
	ok, reason = h.Ready()
	require.False(t, ok, "a refusal is not ridden out")
	require.Contains(t, reason, "refuses service (status 403")
	h.FluentdRefused(400, true)
	_, reason = h.Ready()
	require.Contains(t, reason, "<parse>")
	h.FluentdSend(nil)
	ok, _ = h.Ready()
	require.True(t, ok)

	// Fluentd failing: fine for a while, then not ready; one success clears it.
	h.FluentdSend(errors.New("503 Service Unavailable"))
	now = now.Add(StuckAfter - time.Second)
	ok, _ = h.Ready()
	require.True(t, ok, "a short outage is ridden out")
	now = now.Add(2 * time.Second)
	ok, reason = h.Ready()
	require.False(t, ok)
	require.Contains(t, reason, "fluentd: every send has failed")
	h.FluentdSend(nil)

	h.CheckpointPending()
	now = now.Add(StuckAfter + time.Second)
	ok, reason = h.Ready()
	require.False(t, ok)
	require.Contains(t, reason, "checkpoint")
	h.CheckpointWritten()
	ok, _ = h.Ready()
	require.True(t, ok)

	live, _ := h.Live()
	require.True(t, live)
}

// A daemon waiting at start for Fluentd or Teleport is alive (a liveness
// probe must not restart it in a loop for as long as they are down) and
// not ready, saying what it waits for; once its tree has stopped it is
// neither.
func TestProbesWhileStartingRunningAndStopped(t *testing.T) {
	h := &Health{}
	const teleport, fluentd = "waiting for Teleport at teleport:3025", "waiting for Fluentd at https://fluentd:8888/teleport.log"
	for _, c := range []struct {
		step              func()
		live, ready       bool
		liveWhy, readyWhy string
		starting          bool
		waiting           string
	}{
		{func() {}, true, false, "starting", "starting", true, ""},
		{func() { h.Starting(teleport) }, true, false, "starting: " + teleport, "starting: " + teleport, true, teleport},
		{func() { h.Starting(fluentd) }, true, false, "starting: " + fluentd, "starting: " + fluentd, true, fluentd},
		{func() { h.SetRunning(true) }, true, true, "running", "ready", false, ""},
		{func() { h.SetRunning(false) }, false, false, "the actor tree has stopped", "the actor tree has stopped", false, ""},
		{func() { h.Starting(fluentd) }, false, false, "the actor tree has stopped", "the actor tree has stopped", false, ""},
	} {
		c.step()
		live, why := h.Live()
		require.Equal(t, c.live, live, why)
		require.Equal(t, c.liveWhy, why)
		ready, why := h.Ready()
		require.Equal(t, c.ready, ready, why)
		require.Equal(t, c.readyWhy, why)
		waiting, starting := h.WaitingFor()
		require.Equal(t, c.starting, starting)
		require.Equal(t, c.waiting, waiting)
	}
}

func TestProbeHandlersAnswerWhatTheHealthSays(t *testing.T) {
	m := New()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	probe := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		var body struct {
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		require.Equal(t, resp.StatusCode == http.StatusOK, body.OK)
		return resp.StatusCode, body.Reason
	}
	m.Health.Starting("waiting for Fluentd at https://fluentd:8888/teleport.log")
	code, why := probe("/healthz")
	require.Equal(t, http.StatusOK, code, why)
	code, why = probe("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "starting: waiting for Fluentd at https://fluentd:8888/teleport.log", why)

	m.Health.SetRunning(true)
	code, _ = probe("/readyz")
	require.Equal(t, http.StatusOK, code)
	m.Health.SetRunning(false)
	code, why = probe("/healthz")
	require.Equal(t, http.StatusServiceUnavailable, code, why)
}

func TestHandlerServesJSONProbesAndMetrics(t *testing.T) {
	m := New()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	m.Health.SetRunning(true)
	m.EventsSent.WithLabelValues(Audit).Add(3)
	m.SetBuild("v1.2.3")
	resp, err = http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(raw), `teleport_event_handler_events_sent_total{stream="audit"} 3`)
	require.Contains(t, string(raw), "# HELP teleport_event_handler_lag_seconds")
	require.Contains(t, string(raw), `teleport_event_handler_build_info{goversion="`+runtime.Version()+`",version="v1.2.3"} 1`)
}

func TestStatusClass(t *testing.T) {
	require.Equal(t, "2xx", StatusClass(204))
	require.Equal(t, "5xx", StatusClass(503))
	require.Equal(t, "4xx", StatusClass(429))
	require.Equal(t, "error", StatusClass(0))
}

// lag_seconds is the age of the oldest audit event not yet confirmed: 0
// once the reader is caught up, on a quiet cluster too, where the newest
// delivered event may be hours old.
func TestLagIsTheAgeOfTheOldestEventNotConfirmed(t *testing.T) {
	m := New()
	require.Zero(t, m.lag(), "before anything is read")
	m.SetAcked(time.Now().Add(-2 * time.Hour))
	m.SetPending(time.Now().Add(-90 * time.Second))
	require.InDelta(t, 90, m.lag(), 5)
	m.SetPending(time.Time{}) // caught up
	require.Zero(t, m.lag(), "a quiet, fully delivered cluster has no lag")
}

// Progress lines are for reading a backlog: once caught up there is one
// "caught up" line and no more progress.
func TestProgressStopsOnceCaughtUp(t *testing.T) {
	m := New()
	var out syncbuf.Buffer
	every := 5 * time.Second
	r := m.newReporter(zerolog.New(&out), ReportOptions{Every: every, Summary: time.Hour, Start: time.Now().Add(-time.Hour)})
	at := r.first.at
	tick := func() {
		at = at.Add(every)
		now := m.snapshot()
		now.at = at
		r.report(now)
	}
	m.SetPending(time.Now().Add(-time.Minute))
	tick()
	require.Equal(t, 1, strings.Count(out.String(), `"message":"progress"`), "progress while a backlog is read")
	m.SetPending(time.Time{})
	tick()
	require.Equal(t, 1, strings.Count(out.String(), "caught up"))
	for range 10 {
		tick()
	}
	require.Equal(t, 1, strings.Count(out.String(), `"message":"progress"`), "no progress lines once caught up")
	require.Equal(t, 1, strings.Count(out.String(), "caught up"), "said once")
}

// The Fluentd client certificate's validity is read at each scrape, 0
// until the daemon watches it.
func TestFluentdCertificateValidityIsReadAtEachScrape(t *testing.T) {
	m := New()
	gauge := func(name string) float64 {
		families, err := m.Registry.Gather()
		require.NoError(t, err)
		for _, f := range families {
			if f.GetName() == namespace+"_"+name {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	require.Zero(t, gauge("fluentd_certificate_expires_at_seconds"))
	issued, expires := time.Unix(1000, 0), time.Unix(2000, 0)
	m.WatchFluentdCertificate(func() (time.Time, time.Time) { return issued, expires })
	require.Equal(t, 1000.0, gauge("fluentd_certificate_issued_at_seconds"))
	require.Equal(t, 2000.0, gauge("fluentd_certificate_expires_at_seconds"))
	expires = time.Unix(3000, 0) // renewed
	require.Equal(t, 3000.0, gauge("fluentd_certificate_expires_at_seconds"))
	issued, expires = time.Time{}, time.Time{}
	require.Zero(t, gauge("fluentd_certificate_expires_at_seconds"), "no certificate: 0, not year 1")
}
