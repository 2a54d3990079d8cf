// Package teleport connects to the Teleport Auth (or Proxy) service with the
// teleport/api client, checks the connection with Ping, and keeps an identity
// file fresh when asked to.
package teleport

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gravitational/teleport/api/client"
	"github.com/gravitational/teleport/api/client/proto"
	"github.com/gravitational/teleport/api/identityfile"
	"github.com/gravitational/trace"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fdfwd/teleport-event-handler/internal/eventwire"
)

// Namespace is the only audit namespace Teleport has.
const Namespace = "default"

// DialTimeout bounds the wait for the first connection: short, so that a
// wrong address or certificate is reported quickly rather than after the
// client's default 30s.
const DialTimeout = 10 * time.Second

// Kind classifies a connection failure.
type Kind string

const (
	Unreachable     Kind = "unreachable"
	TLS             Kind = "tls"
	ExpiredIdentity Kind = "expired identity"
	AccessDenied    Kind = "access denied"
	BadCredentials  Kind = "bad credentials"
)

// ConnectError says what failed when connecting.
type ConnectError struct {
	Addr string
	Kind Kind
	Fix  string
	Err  error
}

// Error is one line: what failed and where, the fix, then the root cause
// (the client's own text nests every attempt's gRPC and trace messages,
// with the cause at the bottom).
func (e *ConnectError) Error() string {
	return fmt.Sprintf("teleport at %s: %s: %s; cause: %s", e.Addr, e.Kind, e.Fix, e.Cause())
}

// causes mark where the root cause begins in the text of a failed
// connection, the most specific first; cut drops the marker itself.
var causes = []struct {
	marker string
	cut    bool
}{
	{"x509: ", false},
	{"remote error: tls: ", false},
	{"tls: ", false},
	{"lookup ", false},
	{"connect: ", true}, // connection refused, no route to host
	{"i/o timeout", false},
}

// maxCause bounds a cause that matches no marker.
const maxCause = 200

// Cause is the root cause of the failure, condensed: "connection refused",
// "x509: certificate signed by unknown authority", rather than the client's
// nested text of every connection method it tried.
func (e *ConnectError) Cause() string {
	if e.Err == nil {
		return "unknown"
	}
	msg := e.Err.Error()
	if authDialOutOfTime(msg) {
		return noAnswer
	}
	// gRPC quotes each attempt's transport error: desc = "transport: ...".
	var descs []string
	for rest := msg; ; {
		_, after, ok := strings.Cut(rest, `desc = "`)
		if !ok {
			break
		}
		descs, rest = append(descs, quoted(after)), after
	}
	if descs == nil {
		descs = []string{msg}
	}
	for _, c := range causes {
		for _, d := range descs {
			if i := strings.Index(d, c.marker); i >= 0 {
				if c.cut {
					i += len(c.marker)
				}
				cause, _, _ := strings.Cut(d[i:], " (possibly because of") // x509's guess at the chain
				return firstLine(cause)
			}
		}
	}
	if first := firstLine(msg); first != "all connection methods failed" && !strings.HasPrefix(first, "failed to connect to addr") {
		return first
	}
	if strings.Contains(msg, context.DeadlineExceeded.Error()) {
		return noAnswer
	}
	return firstLine(strings.Join(strings.Fields(msg), " "))
}

// noAnswer is the cause of a dial that ran out of time.
var noAnswer = "no answer in time (" + context.DeadlineExceeded.Error() + ")"

// quoted is the text of s up to its closing quote, unescaped: gRPC quotes
// the transport's error, which may quote a URL in turn (Get \"https://...\").
func quoted(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return strings.ReplaceAll(s[:i], `\"`, `"`)
		}
	}
	return strings.ReplaceAll(s, `\"`, `"`)
}

// firstLine is s up to its first line break, at most maxCause bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > maxCause {
		s = s[:maxCause] + "..."
	}
	return s
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Config says how to reach the Teleport Auth or Proxy Service: with an
// identity file, or with a certificate, key and CA.
type Config struct {
	// Addr is host:port of the Auth Service or the Proxy Service.
	Addr string
	// Identity is an identity file as written by `tctl auth sign`.
	Identity string
	// CA, Cert and Key are PEM files used instead of an identity file.
	CA, Cert, Key string
	// Reload lets RunRefresh reload the identity file, so that short-lived
	// credentials renewed on disk (by tbot, say) are picked up.
	Reload bool
}

// Conn is a connected, pinged client.
type Conn struct {
	*client.Client
	Ping    proto.PingResponse
	dynamic *client.DynamicIdentityFileCreds
	cfg     Config
	// notAfter is when the certificate the daemon started with expires.
	notAfter time.Time
}

// Expiry is when the identity in use expires (false when unknown): the
// reloaded one's with a reloading identity file.
func (c *Conn) Expiry() (time.Time, bool) {
	if c.dynamic != nil {
		if exp, ok := c.dynamic.Expiry(); ok {
			return exp, true
		}
	}
	return c.notAfter, !c.notAfter.IsZero()
}

// Connect builds credentials from cfg, dials and pings.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	fail := func(k Kind, fix string, err error) error {
		return &ConnectError{Addr: cfg.Addr, Kind: k, Fix: fix, Err: err}
	}
	c := &Conn{cfg: cfg}
	var creds client.Credentials
	var certPEM []byte
	if cfg.Identity != "" {
		id, err := identityfile.ReadFile(cfg.Identity)
		if err != nil {
			return nil, fail(BadCredentials, "check --teleport-identity", fmt.Errorf("read identity file %s: %w", cfg.Identity, err))
		}
		certPEM = id.Certs.TLS
		if cfg.Reload {
			c.dynamic, err = client.NewDynamicIdentityFileCreds(cfg.Identity)
			if err != nil {
				return nil, fail(BadCredentials, "check --teleport-identity", err)
			}
			creds = c.dynamic
		} else {
			creds = client.LoadIdentityFile(cfg.Identity)
		}
	} else {
		var err error
		if certPEM, err = os.ReadFile(cfg.Cert); err != nil {
			return nil, fail(BadCredentials, "check --teleport-cert", err)
		}
		creds = client.LoadKeyPair(cfg.Cert, cfg.Key, cfg.CA)
	}
	if notAfter, err := leafNotAfter(certPEM); err == nil {
		if time.Now().After(notAfter) {
			return nil, fail(ExpiredIdentity, "issue a new identity (tctl auth sign) and point the daemon at it",
				fmt.Errorf("the certificate expired at %s", notAfter.UTC().Format(time.RFC3339)))
		}
		c.notAfter = notAfter
	}

	dialCtx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	clt, err := client.New(dialCtx, client.Config{
		Addrs:       []string{cfg.Addr},
		Credentials: []client.Credentials{creds},
		DialTimeout: DialTimeout,
		// Events keep their fields as bytes until encoded (eventwire).
		DialOpts: []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodecV2(eventwire.Codec()))},
	})
	if err != nil {
		return nil, classify(cfg.Addr, err)
	}
	pingCtx, cancelPing := context.WithTimeout(ctx, DialTimeout)
	defer cancelPing()
	pong, err := clt.Ping(pingCtx)
	if err != nil {
		clt.Close()
		return nil, classify(cfg.Addr, err)
	}
	c.Client, c.Ping = clt, pong
	return c, nil
}

func classify(addr string, err error) error {
	msg := err.Error()
	switch {
	case authDialOutOfTime(msg):
		// Unreachable, below.
	case strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") || strings.Contains(msg, "certificate"):
		return &ConnectError{Addr: addr, Kind: TLS, Err: err,
			Fix: "check that --teleport-ca (or the identity file's CA) is the cluster's CA, that --teleport-addr names the Auth or Proxy service, and that the certificate is not expired or revoked"}
	case trace.IsAccessDenied(err):
		return &ConnectError{Addr: addr, Kind: AccessDenied, Err: err,
			Fix: "give the event handler's role read and list on event and session"}
	}
	return &ConnectError{Addr: addr, Kind: Unreachable, Err: err,
		Fix: "check --teleport-addr and that the Auth or Proxy service is running and reachable"}
}

// authDialOutOfTime reports whether the client's dial as an auth server
// ran out of time before anything answered. The client then also reports
// the other ways it tried, among them a web proxy's /webapi/find verified
// against the system's roots, which fails with x509 against any private
// CA: no certificate problem of the daemon's, and no reason to give up.
func authDialOutOfTime(msg string) bool {
	_, auth, ok := strings.Cut(msg, " as an auth server\n")
	if !ok {
		return false
	}
	auth, _, _ = strings.Cut(auth, "\n\tfailed to connect to addr")
	for part := range strings.SplitSeq(strings.TrimSpace(auth), ", ") {
		if part != context.DeadlineExceeded.Error() && part != context.Canceled.Error() {
			return false
		}
	}
	return true
}

func leafNotAfter(certPEM []byte) (time.Time, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return time.Time{}, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

// RunRefresh reloads the identity file every interval until ctx ends, so a
// renewed identity (from tbot, say) is used without restarting anything.
// A failed reload keeps the previous identity and is logged.
func (c *Conn) RunRefresh(ctx context.Context, interval time.Duration, log zerolog.Logger, onReload func(error)) {
	if c.dynamic == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := c.dynamic.Reload()
			if err != nil {
				log.Error().Err(err).Str("file", c.cfg.Identity).Msg("identity reload failed; keeping the previous identity")
			} else {
				ev := log.Debug().Str("file", c.cfg.Identity)
				if exp, ok := c.dynamic.Expiry(); ok {
					ev = ev.Time("expires", exp)
				}
				ev.Msg("identity reloaded")
			}
			if onReload != nil {
				onReload(err)
			}
		}
	}
}

// Transient is true for errors that say Teleport is unreachable, overloaded
// or slow rather than anything about the request: callers retry those for as
// long as they last, and give up on others after a bounded number of tries.
func Transient(err error) bool {
	if trace.IsConnectionProblem(err) || trace.IsLimitExceeded(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// Codes trail.FromGRPC leaves unconverted.
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Aborted, codes.Unavailable, codes.ResourceExhausted:
		return true
	}
	return false
}
