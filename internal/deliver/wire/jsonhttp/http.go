// Package jsonhttp is the transport to Fluentd's HTTP input (in_http) over
// mTLS: one event per POST as a JSON object, or several as a JSON array,
// and the answer judged by its status (Classify).
package jsonhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RequestTimeout bounds one POST, as upstream does.
const RequestTimeout = 30 * time.Second

// Transport is the transport to Fluentd's in_http input over mTLS: one event per
// POST as a JSON object, or several as a JSON array, which in_http splits
// into records.
type Transport struct {
	http  *http.Client
	creds *wire.Credentials
}

// New returns a transport that keeps up to maxConns keep-alive
// connections to Fluentd, so events do not pay a handshake each; creds
// may be nil only for plain http:// URLs (tests).
func New(creds *wire.Credentials, maxConns int) *Transport {
	tr := &http.Transport{
		Proxy:               nil,             // Fluentd is addressed directly, whatever HTTPS_PROXY says
		DialTLSContext:      creds.DialHTTPS, // the credentials of the moment
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		MaxConnsPerHost:     maxConns,
		// Fluentd closes idle connections after 10s; retire ours first so a
		// POST never lands on a connection the server is closing.
		IdleConnTimeout:       5 * time.Second,
		ResponseHeaderTimeout: RequestTimeout,
		ForceAttemptHTTP2:     false, // in_http speaks Transport/1.1
	}
	// A redirect is answered, never followed: following a 301/302/303
	// turns the POST into a GET without the events (whose 2xx would count
	// as delivered), and a 307/308 sends the events, with the client
	// certificate, to whatever Location names.
	noRedirects := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Transport{http: &http.Client{Transport: tr, Timeout: RequestTimeout, CheckRedirect: noRedirects}, creds: creds}
}

// Close drops idle connections.
func (c *Transport) Close() { c.http.CloseIdleConnections() }

// wire.Check implements Transport: one TLS handshake with the endpoint of url.
func (c *Transport) Check(ctx context.Context, url string) error {
	return wire.Check(ctx, url, c.creds)
}

// NewSender implements wire.Transport. The senders share the transport's
// keep-alive connections.
func (c *Transport) NewSender() wire.Sender { return &httpSender{c: c} }

// httpSender remembers the last URL it parsed: a connection sends to the
// same few URLs again and again.
type httpSender struct {
	c       *Transport
	lastRaw string
	lastURL *url.URL
}

func (s *httpSender) Send(ctx context.Context, rawURL string, events [][]byte) wire.Result {
	if rawURL != s.lastRaw {
		u, err := url.Parse(rawURL)
		if err != nil {
			return wire.Result{Class: wire.Permanent, Reason: fmt.Sprintf("build request: %v", err)}
		}
		s.lastRaw, s.lastURL = rawURL, u
	}
	return s.c.PostURL(ctx, s.lastURL, Body(events))
}

func (s *httpSender) Close() {}

// Body is what one POST of events carries: the event itself, or a JSON
// array of the events.
func Body(events [][]byte) []byte {
	if len(events) == 1 {
		return events[0]
	}
	n := 1
	for _, e := range events {
		n += len(e) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']')
}

// jsonHeader is the header of every POST.
var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// Post sends one body and classifies the outcome. It never returns an error:
// every failure is a wire.Result with a reason.
func (c *Transport) Post(ctx context.Context, rawURL string, body []byte) wire.Result {
	u, err := url.Parse(rawURL)
	if err != nil {
		return wire.Result{Class: wire.Permanent, Reason: fmt.Sprintf("build request: %v", err)}
	}
	return c.PostURL(ctx, u, body)
}

// PostURL is Post to a parsed URL, which it does not modify: callers that
// send to the same URL again and again parse it once.
func (c *Transport) PostURL(ctx context.Context, u *url.URL, body []byte) wire.Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "", bytes.NewReader(body))
	if err != nil {
		return wire.Result{Class: wire.Permanent, Reason: fmt.Sprintf("build request: %v", err)}
	}
	req.URL, req.Host = u, u.Host
	req.Header = jsonHeader // read only: the transport does not change it
	resp, err := c.http.Do(req)
	if err != nil {
		return wire.Result{Class: wire.Retry, Reason: describe(err)}
	}
	defer resp.Body.Close()
	// Read (a bounded part of) the body so the connection can be reused.
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, MaxReason+1))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	r := wire.Result{Class: wire.Classify(resp.StatusCode), Status: resp.StatusCode}
	if r.Class != wire.Success {
		r.Reason = strings.TrimSpace(resp.Status + ": " + capped(strings.TrimSpace(string(msg))))
		r.Reason = strings.TrimSuffix(r.Reason, ":")
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 {
			r.Reason = fmt.Sprintf("%s (redirect to %q not followed: set the Fluentd URL to the receiver itself)", r.Reason, capped(loc))
		}
		r.RetryAfter = retryAfter(resp.Header.Get("wire.Retry-After"), time.Now())
	}
	return r
}

// MaxReason bounds what of the receiver's answer a wire.Result keeps, and so
// what log lines and dead letters hold of it.
const MaxReason = 300

// capped is s within MaxReason bytes, valid UTF-8, marked when cut.
func capped(s string) string {
	if len(s) <= MaxReason {
		return strings.ToValidUTF8(s, "")
	}
	return strings.ToValidUTF8(s[:MaxReason], "") + "... (cut)"
}

// retryAfter parses a wire.Retry-After header: delay-seconds or an Transport date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// describe turns a transport error into a short cause for logs.
func describe(err error) string {
	var uerr interface{ Unwrap() error }
	if errors.As(err, &uerr) {
		err = errors.Unwrap(err) // drop the `Post "url":` prefix: callers log the URL
	}
	return err.Error()
}
