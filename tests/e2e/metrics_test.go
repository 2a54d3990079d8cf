package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// scrape returns the samples of /metrics by name and labels, e.g.
// `teleport_event_handler_events_sent_total{stream="audit"}`.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

// probe returns the status code and reason of /healthz or /readyz, or 0
// when nothing answers.
func probe(addr, path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct {
		OK     bool   `json:"ok"`
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body.Reason
}

func TestMetricsMatchWhatFluentdReceived(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	evs := e.seed(600, 30)
	e.fluentd.FailFirst(7, 503)
	e.fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == evs[100].GetID() })
	addr := freeAddr(t)
	p := run(t, nil, e.args("--metrics-addr", addr, "--skip-event-types", "user.login")...)
	waitFor(t, 30*time.Second, "metrics", func() bool { code, _ := probe(addr, "/healthz"); return code == http.StatusOK })

	// Let it catch up and settle: the live window is polled again and again.
	sessionEvents := 0
	for _, rec := range e.recordings {
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
	waitFor(t, 30*time.Second, "every event counted", func() bool {
		m = scrape(t, addr)
		return m[`teleport_event_handler_events_sent_total{stream="session"}`] == float64(sessionEvents) &&
			m[`teleport_event_handler_events_sent_total{stream="audit"}`]+1 == float64(len(evs)-skipped)
	})
	require.Equal(t, float64(e.audit()), m[`teleport_event_handler_events_sent_total{stream="audit"}`])
	require.EqualValues(t, 1, m[`teleport_event_handler_events_dead_lettered_total{stream="audit"}`])
	require.EqualValues(t, skipped, m[`teleport_event_handler_events_skipped_total{reason="type",stream="audit"}`])
	require.EqualValues(t, len(evs), m[`teleport_event_handler_events_fetched_total{stream="audit"}`])
	retried := m[`teleport_event_handler_events_retried_total{stream="audit"}`] + m[`teleport_event_handler_events_retried_total{stream="session"}`]
	require.EqualValues(t, 7, retried)
	require.EqualValues(t, len(e.recordings), m[`teleport_event_handler_sessions_finished_total`])
	require.EqualValues(t, 10, m[`teleport_event_handler_fluentd_connections`])
	require.EqualValues(t, 1, m[`teleport_event_handler_actors{kind="poller"}`])
	require.EqualValues(t, 10, m[`teleport_event_handler_actors{kind="connection"}`])
	require.Zero(t, m[`teleport_event_handler_actors{kind="player"}`], "finished players are gone")
	require.Zero(t, m[`teleport_event_handler_sends_in_flight`])
	require.Positive(t, m[`teleport_event_handler_checkpoint_writes_total{result="ok"}`])
	require.Greater(t, m[`teleport_event_handler_acked_event_timestamp_seconds`], float64(e.t0.Unix()))
	require.Positive(t, m[`teleport_event_handler_send_duration_seconds_count`])
	code, reason := probe(addr, "/readyz")
	require.Equal(t, http.StatusOK, code, reason)

	p.signal(15)
	require.Equal(t, 0, p.wait(t, 20*time.Second))
}

func TestReadyzFollowsTeleport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.seed(20, 31)
	addr := freeAddr(t)
	p := run(t, nil, e.args("--metrics-addr", addr)...)
	waitFor(t, 30*time.Second, "ready", func() bool { code, _ := probe(addr, "/readyz"); return code == http.StatusOK })

	e.teleport.FailNext("GetUnstructuredEvents", 1000, codes.Unavailable)
	waitFor(t, 30*time.Second, "unready", func() bool { code, _ := probe(addr, "/readyz"); return code == http.StatusServiceUnavailable })
	_, reason := probe(addr, "/readyz")
	require.Contains(t, reason, "teleport")
	code, _ := probe(addr, "/healthz")
	require.Equal(t, http.StatusOK, code, "alive while Teleport is away")
	m := scrape(t, addr)
	require.Positive(t, m[`teleport_event_handler_teleport_errors_total{code="connection_problem",method="SearchUnstructuredEvents"}`], fmt.Sprint(m))

	e.teleport.FailNext("GetUnstructuredEvents", 0, codes.OK)
	// The poller backs off from 1 s doubling; allow for a few retries.
	waitFor(t, 60*time.Second, "ready again", func() bool { code, _ := probe(addr, "/readyz"); return code == http.StatusOK })
	p.signal(15)
	require.Equal(t, 0, p.wait(t, 20*time.Second))
}
