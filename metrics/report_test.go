package metrics

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReportsLogProgressAndSummaries(t *testing.T) {
	m := New()
	start := time.Now().Add(-time.Hour)
	m.EventsSent.WithLabelValues(Audit).Add(1000)
	m.EventsSent.WithLabelValues(Session).Add(500)
	m.SetAcked(start.Add(30 * time.Minute))
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.RunReports(ctx, zerolog.New(&out), ReportOptions{Start: start, Every: 20 * time.Millisecond, Summary: 50 * time.Millisecond})
	}()
	require.Eventually(t, func() bool {
		s := out.String()
		return strings.Contains(s, `"message":"progress"`) && strings.Contains(s, `"message":"summary of the last minute"`)
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	require.Contains(t, out.String(), `"events":1500`)
	require.Contains(t, out.String(), `"done":"50.0%"`)
}

func TestProgressBarDrawsOnItsWriter(t *testing.T) {
	m := New()
	start := time.Now().Add(-time.Hour)
	m.SetAcked(start.Add(45 * time.Minute))
	var bar syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	m.RunReports(ctx, zerolog.Nop(), ReportOptions{Bar: true, Out: &bar, Start: start})
	require.Regexp(t, `0 events, 0/s, at \S+ +7[45]%`, bar.String())
}
