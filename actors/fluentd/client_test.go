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

func TestBackoffIsCappedExponentialWithJitter(t *testing.T) {
	none := func(time.Duration) time.Duration { return 0 }
	full := func(d time.Duration) time.Duration { return d }
	require.Equal(t, 125*time.Millisecond, Backoff(1, 0, none))
	require.Equal(t, 250*time.Millisecond, Backoff(1, 0, full))
	require.Equal(t, 1*time.Second, Backoff(3, 0, full))
	require.Equal(t, 10*time.Second, Backoff(20, 0, full))
	require.Equal(t, 5*time.Second, Backoff(20, 0, none))
	// Retry-After wins, within a cap.
	require.Equal(t, 42*time.Second, Backoff(1, 42*time.Second, full))
	require.Equal(t, 5*time.Minute, Backoff(1, time.Hour, full))
}
