package jsonhttp

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

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
		d := wire.RetryDelay(attempt, 0)
		require.GreaterOrEqual(t, d, nominal/2, "attempt %d", attempt)
		require.LessOrEqual(t, d, nominal, "attempt %d", attempt)
	}
	// wire.Retry-After wins, within a cap.
	require.Equal(t, 42*time.Second, wire.RetryDelay(1, 42*time.Second))
	require.Equal(t, 5*time.Minute, wire.RetryDelay(1, time.Hour))
}

// A redirect is never followed: a 301/302/303 would turn the POST into a
// GET without the events (and its 2xx would count as delivered), and a
// 307/308 would send the events, with the client certificate, wherever
// Location says.
func TestRedirectsAreRefusalsAndNeverFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			elsewhere.Add(1)
			return // 200
		}
		status, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		http.Redirect(w, r, "/elsewhere", status)
	}))
	defer srv.Close()
	// Credentials without files keep the pool given: httptest's CA.
	c := New(wire.FixedCredentials(srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, &tls.Certificate{}), 1)
	defer c.Close()
	for _, status := range []int{301, 302, 303, 307, 308} {
		res := c.NewSender().Send(context.Background(), fmt.Sprintf("%s/%d", srv.URL, status), [][]byte{[]byte(`{"a":1}`)})
		require.Equal(t, wire.Refused, res.Class, "status %d: %+v", status, res)
		require.Equal(t, status, res.Status)
		require.Contains(t, res.Reason, "redirect", "status %d", status)
	}
	require.Zero(t, elsewhere.Load(), "a redirect was followed")
}

// A receiver's long answer is cut before it reaches logs and dead letters.
func TestReasonIsCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(strings.Repeat("secret-looking body ", 1000)))
	}))
	defer srv.Close()
	c := New(nil, 1)
	defer c.Close()
	res := c.Post(context.Background(), srv.URL+"/x", []byte(`{}`))
	require.Equal(t, wire.Permanent, res.Class)
	require.LessOrEqual(t, len(res.Reason), MaxReason+40)
	require.True(t, strings.HasSuffix(res.Reason, "... (cut)"), res.Reason)
}
