package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// TLSError says the Fluentd endpoint answered but the TLS handshake failed
// for a reason that waiting will not fix: a certificate that does not verify
// or a client certificate that the server refuses.
type TLSError struct {
	URL   string
	Cause string
	Fix   string
	Err   error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("%s at %s: TLS handshake failed: %s; %s", receiver(e.URL), e.URL, e.Cause, e.Fix)
}

func (e *TLSError) Unwrap() error { return e.Err }

// UnreachableError says the endpoint could not be reached at all; Fluentd may
// come up later.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%s at %s is unreachable: %v", receiver(e.URL), e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Check opens one TLS connection to the endpoint of rawURL and reports a
// *TLSError or an *UnreachableError. It sends no HTTP request, so Fluentd
// records nothing.
func Check(ctx context.Context, rawURL string, creds *Credentials) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("parse %s: %w", rawURL, err)
	}
	return CheckAt(ctx, rawURL, Addr(u, "443"), creds)
}

// Addr is the host:port of u, with defaultPort when u names none.
func Addr(u *url.URL, defaultPort string) string {
	port := u.Port()
	if port == "" {
		port = defaultPort
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// CheckAt is Check of the endpoint at addr, for a protocol whose server
// speaks only when spoken to.
func CheckAt(ctx context.Context, rawURL, addr string, creds *Credentials) error {
	conn, err := creds.Dial(ctx, addr)
	if err != nil {
		return ClassifyHandshake(rawURL, err)
	}
	defer conn.Close()
	// With TLS 1.3 the server checks our certificate after the client
	// considers the handshake done; a refusal arrives as an alert on the
	// first read. Silence until the deadline means the server is waiting
	// for a request: all is well.
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var buf [1]byte
	if _, err := conn.Read(buf[:]); err != nil {
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return nil
		}
		return ClassifyHandshake(rawURL, err)
	}
	return nil
}

func ClassifyHandshake(rawURL string, err error) error {
	var (
		unknown   x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		alert     tls.AlertError
		opErr     *net.OpError
	)
	switch {
	case errors.As(err, &unknown):
		return &TLSError{URL: rawURL, Cause: "the server certificate is not signed by --fluentd-ca", Fix: "point --fluentd-ca at the CA that signed Fluentd's certificate", Err: err}
	case errors.As(err, &hostname):
		return &TLSError{URL: rawURL, Cause: hostname.Error(), Fix: "use a --fluentd-url host name that is in the server certificate, or reissue the certificate with it", Err: err}
	case errors.As(err, &invalid):
		return &TLSError{URL: rawURL, Cause: invalid.Error(), Fix: "renew Fluentd's server certificate", Err: err}
	case errors.As(err, &verifyErr):
		return &TLSError{URL: rawURL, Cause: verifyErr.Error(), Fix: "check --fluentd-ca and Fluentd's server certificate", Err: err}
	case errors.As(err, &alert), isRemoteAlert(err):
		fix := "use a --fluentd-cert signed by the CA that Fluentd trusts (its ca_path)"
		if receiver(rawURL) != "fluentd" {
			fix = "use a --receiver-cert signed by the CA that the syslog receiver trusts (rsyslog: DefaultNetstreamDriverCAFile, or imrelp's tls.caCert)"
		}
		return &TLSError{URL: rawURL, Cause: "the server refused the client certificate (" + err.Error() + ")", Fix: fix, Err: err}
	case errors.As(err, &opErr), errors.Is(err, context.DeadlineExceeded):
		return &UnreachableError{URL: rawURL, Err: err}
	default:
		var recordErr tls.RecordHeaderError
		if errors.As(err, &recordErr) {
			return &TLSError{URL: rawURL, Cause: "the server does not speak TLS", Fix: "check that --fluentd-url points at an in_http source with a <transport tls> section", Err: err}
		}
		return &UnreachableError{URL: rawURL, Err: err}
	}
}

// isRemoteAlert recognises alerts from the peer, which crypto/tls reports as
// plain errors wrapped in *net.OpError ("remote error: tls: ...").
func isRemoteAlert(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if len(e.Error()) >= 18 && e.Error()[:18] == "remote error: tls:" {
			return true
		}
	}
	return false
}

// WaitReady checks the endpoint of rawURL with t until the handshake works.
// A *TLSError is returned at once; an unreachable endpoint is logged and
// checked again with Retries until ctx ends.
func WaitReady(ctx context.Context, t Transport, rawURL string, log zerolog.Logger) error {
	for attempt := 1; ; attempt++ {
		err := t.Check(ctx, rawURL)
		var unreachable *UnreachableError
		if err == nil || !errors.As(err, &unreachable) {
			if err == nil && attempt > 1 {
				log.Info().Str("url", rawURL).Msg(receiver(rawURL) + " is reachable")
			}
			return err
		}
		delay := Retries.Delay(attempt)
		log.Error().Str("url", rawURL).Err(unreachable.Err).Dur("retry_in", delay).Msg(receiver(rawURL) + " is unreachable; waiting for it")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// receiver names the receiver of a URL in messages: Fluentd, or a syslog
// receiver.
func receiver(rawURL string) string {
	if strings.HasPrefix(rawURL, "syslog+tls://") || strings.HasPrefix(rawURL, "relp+tls://") {
		return "the syslog receiver"
	}
	return "fluentd"
}
