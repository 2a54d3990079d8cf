// Package wire is what the transports to the receiver (Fluentd today)
// share: the Transport and Sender a transport implements, the classes of an
// answer, TLS set-up with credentials read again per connection, and the
// start-up handshake check. It knows nothing of actors: the pool
// (actors/pool) drives a Transport, one Sender per connection actor, and
// the bench and the tests use the same Transport directly.
//
// There are two transports, one package each, chosen by the URL's scheme
// (Schemes): jsonhttp (Fluentd's in_http: one JSON object, or an array, per
// POST) and forward (in_forward: msgpack messages acknowledged by chunk).
// Another wire protocol is another package with a Transport: the pool
// hands it batches of encoded events for a URL and needs nothing else.
package wire

import (
	"context"
	"net/http"
	"time"

	"github.com/fdfwd/teleport-event-handler/internal/backoff"
)

// Transport is one wire protocol to Fluentd. It is safe for concurrent
// use.
type Transport interface {
	// Check connects once to the endpoint of url, without sending an
	// event, and returns nil, a *TLSError or an *AuthError (the forward
	// shared key: waiting will not fix either) or an *UnreachableError
	// (Fluentd may come up later).
	Check(ctx context.Context, url string) error
	// NewSender returns the sender of one connection of the pool.
	NewSender() Sender
	// Close releases what the transport keeps open.
	Close()
}

// Sender sends the batches of one connection, one at a time: it is used by
// one goroutine.
type Sender interface {
	// Send delivers events to url in one request and judges the answer.
	// Each event is a JSON object or, for the forward transport, what
	// eventmsgpack made of it. It never returns an error: every failure is a
	// Result with a reason.
	Send(ctx context.Context, url string, events [][]byte) Result
	// Close releases what the sender holds.
	Close()
}

// Class is how a send attempt is judged.
type Class int

const (
	// Success: Fluentd took every event of the request.
	Success Class = iota
	// Retry: the request may succeed later (network errors, timeouts, 408,
	// 429 and 5xx).
	Retry
	// Permanent: Fluentd rejected the events of the request (400, 413,
	// 422, ...); sending them again cannot help.
	Permanent
	// Refused: the receiver refuses service whatever the events are (a
	// redirect, 401, 403, 404, 405, 407, 415, 421): a configuration or
	// access problem to fix on the receiver's side. Retried, like Retry,
	// for as long as it lasts; never a dead letter.
	Refused
	// TooLarge: the events do not fit in one message of the size the
	// receiver takes (forward: ForwardOptions.MaxMessage); nothing was
	// sent. Fewer of them may fit; one alone that does not is rejected
	// for good.
	TooLarge
)

// Result is the outcome of one attempt.
type Result struct {
	Class      Class
	Status     int           // 0 when no response arrived
	Reason     string        // for logs and dead letters
	RetryAfter time.Duration // asked for by the server, 0 if not
	// NoAck, with Retry, says that the message was written in full and no
	// answer came within the wait: over forward, what in_forward does with
	// a message over its chunk_size_limit, and what a stalled Fluentd does
	// with every message. The caller tells the two apart.
	NoAck bool
}

// Retries is the wait before retrying a send to Fluentd. The cap is short
// because a retry to Fluentd is cheap and a long one would hold delivery
// back after an outage ends.
var Retries = backoff.Policy{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Jitter: true}

// MaxRetryAfter caps the wait a Retry-After header can ask for.
const MaxRetryAfter = 5 * time.Minute

// RetryDelay is the wait before retry number attempt (1-based): what the
// server asked for with Retry-After (up to MaxRetryAfter), else Retries.
func RetryDelay(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, MaxRetryAfter)
	}
	return Retries.Delay(attempt)
}

// Classify judges a status: an HTTP response's, or a RELP rsp's, whose
// codes RELP models on HTTP's.
func Classify(status int) Class {
	switch {
	case status >= 200 && status < 300:
		return Success
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500:
		return Retry
	case status < 400, refusals[status]: // 1xx as a final answer, and redirects (never followed: see New)
		return Refused
	default:
		return Permanent
	}
}

// refusals are the 4xx answers that are about the receiver (its address,
// credentials, route or proxy), not about the events sent.
var refusals = map[int]bool{
	http.StatusUnauthorized: true, http.StatusForbidden: true, http.StatusNotFound: true,
	http.StatusMethodNotAllowed: true, http.StatusProxyAuthRequired: true,
	http.StatusUnsupportedMediaType: true, http.StatusMisdirectedRequest: true,
}
