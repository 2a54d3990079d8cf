package fluentd

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestClassify(t *testing.T) {
	for status, want := range map[int]Class{
		200: Success, 201: Success, 204: Success,
		408: Retry, 429: Retry, 500: Retry, 502: Retry, 503: Retry,
		400: Permanent, 401: Permanent, 403: Permanent, 404: Permanent, 413: Permanent, 301: Permanent,
	} {
		require.Equal(t, want, Classify(status), "status %d", status)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Equal(t, 7*time.Second, retryAfter("7", now))
	require.Equal(t, 90*time.Second, retryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now))
	require.Zero(t, retryAfter("", now))
	require.Zero(t, retryAfter("soon", now))
	require.Zero(t, retryAfter(now.Add(-time.Minute).Format(http.TimeFormat), now))
}

func TestRetryDelayIsCappedExponentialWithJitter(t *testing.T) {
	for attempt, nominal := range map[int]time.Duration{1: 250 * time.Millisecond, 3: time.Second, 20: 10 * time.Second} {
		d := RetryDelay(attempt, 0)
		require.GreaterOrEqual(t, d, nominal/2, "attempt %d", attempt)
		require.LessOrEqual(t, d, nominal, "attempt %d", attempt)
	}
	// Retry-After wins, within a cap.
	require.Equal(t, 42*time.Second, RetryDelay(1, 42*time.Second))
	require.Equal(t, 5*time.Minute, RetryDelay(1, time.Hour))
}
