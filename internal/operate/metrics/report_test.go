package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/syncbuf"
)

func TestReportsLogProgressAndSummaries(t *testing.T) {
	m := New()
	start := time.Now().Add(-time.Hour)
	m.EventsSent.WithLabelValues(Audit).Add(1000)
	m.EventsSent.WithLabelValues(Session).Add(500)
	m.SetAcked(start.Add(30 * time.Minute))
	var out syncbuf.Buffer
	r := m.newReporter(zerolog.New(&out), ReportOptions{Start: start, Every: 5 * time.Second, Summary: time.Minute})
	now := m.snapshot()
	now.at = r.first.at.Add(5 * time.Second)
	r.report(now)
	require.Equal(t, 1, strings.Count(out.String(), `"message":"progress"`))
	require.Zero(t, strings.Count(out.String(), `"message":"summary of the last minute"`), "not due yet")
	now.at = r.first.at.Add(time.Minute)
	r.report(now)
	require.Equal(t, 1, strings.Count(out.String(), `"message":"summary of the last minute"`))
	require.Contains(t, out.String(), `"events":1500`)
	// Acknowledged half an hour after start, seen an hour and 5 s after it.
	require.Contains(t, out.String(), `"done":"49.9%"`)
}

func TestProgressBarDrawsOnItsWriter(t *testing.T) {
	m := New()
	start := time.Now().Add(-time.Hour)
	m.SetAcked(start.Add(45 * time.Minute))
	var bar syncbuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	m.RunReports(ctx, zerolog.Nop(), ReportOptions{Bar: true, Out: &bar, Start: start})
	require.Regexp(t, `0 events, 0/s, at \S+ +7[45]%`, bar.String())
}
