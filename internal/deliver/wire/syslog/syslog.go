// Package syslog is the transports to syslog receivers (rsyslog, syslog-ng,
// a SIEM's collector) over TLS with the client certificate, chosen by the
// URL's scheme:
//
//   - syslog+tls:// (TLS): RFC 5424 messages over TLS (RFC 5425), each
//     framed by its length. Plain syslog has no acknowledgement, so a
//     message written to a connection that then breaks may be lost; TLS
//     narrows that window (see tls.go) but cannot close it.
//   - relp+tls:// (RELP): the same messages over RELP, rsyslog's Reliable
//     Event Logging Protocol, each acknowledged by the receiver before it
//     counts as delivered, several in flight per connection.
//
// The pool hands either one the messages eventsyslog made of the events;
// a batch is sent as a run of messages, one write, and judged as one.
package syslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"syscall"
	"time"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

// Schemes and their default ports.
const (
	TLSScheme = "syslog+tls"
	// TLSDefaultPort is RFC 5425's port for syslog over TLS.
	TLSDefaultPort = "6514"
	RELPScheme     = "relp+tls"
	// RELPDefaultPort is the port of rsyslog's RELP examples: RELP has no
	// port assigned.
	RELPDefaultPort = "2514"
)

// DefaultMaxMessage is the default of Options.MaxMessage: rsyslog's
// default maxMessageSize (8k), which RFC 5425 says a receiver should
// accept. A receiver cuts a longer message, and over syslog+tls rsyslog
// may take the rest for a message of its own.
const DefaultMaxMessage = 8 << 10

// AckWait is the default of Options.AckWait.
const AckWait = 10 * time.Second

// Options configure both transports.
type Options struct {
	// MaxMessage is the most bytes one message may take (the receiver's
	// limit; DefaultMaxMessage when zero). A larger one is never sent:
	// it is wire.TooLarge, which the pool dead-letters, with the reason.
	MaxMessage int
	// AckWait bounds the wait for RELP's answers, and for a write.
	AckWait time.Duration
	// Software is what RELP's open offers as relp_software.
	Software string
	// Unconfirmed and Hold narrow the loss window of syslog+tls (see
	// tls.go); Unconfirmed and DefaultHold when zero.
	Unconfirmed int
	Hold        time.Duration
	// OnResend, if set, is told of the messages sent again after a
	// syslog+tls connection broke (for a metric and a log line).
	OnResend func(addr string, n int)
}

func (o Options) withDefaults() Options {
	if o.MaxMessage <= 0 {
		o.MaxMessage = DefaultMaxMessage
	}
	if o.AckWait <= 0 {
		o.AckWait = AckWait
	}
	if o.Software == "" {
		o.Software = "teleport-event-handler"
	}
	if o.Unconfirmed <= 0 {
		o.Unconfirmed = Unconfirmed
	}
	if o.Hold <= 0 {
		o.Hold = DefaultHold
	}
	return o
}

// addrOf is where a URL of scheme sends: its host and port.
func addrOf(raw, scheme, defaultPort string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Scheme != scheme {
		return "", fmt.Errorf("%s is not a %s:// URL", raw, scheme)
	}
	return wire.Addr(u, defaultPort), nil
}

// target is the address of the URL last sent to, kept: a connection
// actor's sender sends to one URL over and over.
type target struct {
	raw, addr string
}

// check is the address of rawURL, of scheme, for a batch of events; a
// URL that does not parse, or a message over most bytes, is the Result
// that judges the batch instead (nothing was sent).
func (t *target) check(rawURL, scheme, defaultPort string, events [][]byte, most int) (string, *wire.Result) {
	if rawURL != t.raw {
		addr, err := addrOf(rawURL, scheme, defaultPort)
		if err != nil {
			return "", &wire.Result{Class: wire.Permanent, Reason: err.Error()}
		}
		t.raw, t.addr = rawURL, addr
	}
	if res, over := oversize(events, most); over {
		return "", &res
	}
	return t.addr, nil
}

// oversize is the Result of a batch holding a message over most bytes,
// which is not sent: the pool halves the batch, down to that message
// alone, which it dead-letters with the reason.
func oversize(events [][]byte, most int) (wire.Result, bool) {
	for _, ev := range events {
		if len(ev) > most {
			return wire.Result{Class: wire.TooLarge, Reason: fmt.Sprintf(
				"a syslog message of %d bytes is over the %d that --syslog-max-message-kb allows (the receiver's limit: "+
					"rsyslog's maxMessageSize, 8k by default, cuts a longer message): raise both to send it", len(ev), most)}, true
		}
	}
	return wire.Result{}, false
}

// watch makes ctx's end interrupt what conn is blocked on; stop undoes it.
func watch(ctx context.Context, conn interface{ SetDeadline(time.Time) error }) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

// errClosedAtOpen is the server closing the connection before it answered
// RELP's open.
var errClosedAtOpen = errors.New("the RELP server closed the connection before it answered the open")

// closedEarly reports whether err is the peer closing or resetting the
// connection.
func closedEarly(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// refusedTwice runs check, the start-up check of an endpoint, and again a
// second later when the server closed the connection right after the TLS
// handshake. Under TLS 1.3 the client's handshake is over before the
// server has checked its certificate, and rsyslog refuses one by closing
// the connection, with an alert or (imrelp, OpenSSL) without one. A
// server restarting can close a connection too, once: twice in a row is
// taken for a refusal, which waiting cannot fix.
func refusedTwice(ctx context.Context, rawURL, trusts string, check func() error) error {
	for attempt := 1; ; attempt++ {
		err := check()
		if err == nil || !closedEarly(err) {
			return err
		}
		if attempt == 2 {
			// Not the *wire.UnreachableError itself: wire.WaitReady would
			// find it in the chain and wait on.
			var unreachable *wire.UnreachableError
			if errors.As(err, &unreachable) {
				err = unreachable.Err
			}
			return &wire.TLSError{URL: rawURL, Err: err,
				Cause: "the server closed the connection right after the TLS handshake, twice: it most likely refuses the client certificate",
				Fix:   "use a --receiver-cert signed by the CA that the receiver trusts (" + trusts + ")"}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// timeNow is the clock of deadlines and of Hold.
var timeNow = time.Now

// describe says what err was, naming a timeout and a stop as such.
func describe(ctx context.Context, err error) string {
	var nerr interface{ Timeout() bool }
	switch {
	case ctx.Err() != nil:
		return "the send was stopped"
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timed out: " + err.Error()
	}
	return err.Error()
}
