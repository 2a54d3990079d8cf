package fluentd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	"github.com/tinylib/msgp/msgp"
)

// ForwardScheme is the URL scheme of Fluentd's forward protocol
// (in_forward), always over TLS with the client certificate.
const ForwardScheme = "forward"

// DefaultForwardPort is in_forward's port when a forward URL names none.
const DefaultForwardPort = "24224"

// HeloWait bounds the wait for the server's HELO, and then for each step
// of the handshake.
const HeloWait = 2 * time.Second

// ForwardOptions configure the forward transport.
type ForwardOptions struct {
	// SharedKey answers the <security> handshake (HELO, PING, PONG);
	// empty when Fluentd has no <security> section.
	SharedKey []byte
	// SharedKeyFile, if set, is where SharedKey was read from: it is read
	// again for each new connection, so that a rotated key (a Secret
	// updated in place) reaches the next handshake. A file that cannot be
	// read, or is empty, keeps the last key read.
	SharedKeyFile string
	// Gzip sends CompressedPackedForward messages.
	Gzip bool
	// Hostname is the client's name in the handshake.
	Hostname string
}

// Forward is the transport to Fluentd's in_forward: each batch is one
// PackedForward message with a chunk id, confirmed by the server's ack for
// that chunk; no ack within RequestTimeout, a reset or a close means the
// batch is sent again on a fresh connection.
//
// The message types, chunk ids, EventTime and the handshake's digests are
// github.com/IBM/fluent-forward-go's. Its Client is not used: it ignores
// the PONG's verdict and reason (a wrong key reads as "no match"), and
// puts no deadline on writes or on the handshake, so a stalled server
// would hold a connection for ever. Nor is its gzip helper (see
// forwardSender.gzip).
type Forward struct {
	creds *Credentials
	opts  ForwardOptions

	mu  sync.Mutex
	key []byte // the shared key of the moment, from opts.SharedKeyFile
}

// NewForward returns a forward transport over mTLS with creds.
func NewForward(creds *Credentials, opts ForwardOptions) *Forward {
	return &Forward{creds: creds, opts: opts, key: opts.SharedKey}
}

// sharedKey is the key for a new connection: the file's, or the last one
// read when it cannot be read or is empty.
func (f *Forward) sharedKey() []byte {
	if f.opts.SharedKeyFile != "" {
		raw, err := os.ReadFile(f.opts.SharedKeyFile)
		if k := strings.TrimRight(string(raw), "\r\n"); err == nil && k != "" {
			f.mu.Lock()
			f.key = []byte(k)
			f.mu.Unlock()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key
}

// Close implements Transport; the senders own their connections.
func (f *Forward) Close() {}

// NewSender implements Transport: one connection per address, opened on
// first use and again after a failure.
func (f *Forward) NewSender() Sender {
	return &forwardSender{f: f, conns: map[string]*forwardConn{}}
}

// target is where a forward URL sends: the address and the tag (the path,
// / turned into dots, as in_http makes a tag of it).
type target struct {
	addr, tag string
}

func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, err
	}
	if u.Scheme != ForwardScheme {
		return target{}, fmt.Errorf("%s is not a %s:// URL", raw, ForwardScheme)
	}
	port := u.Port()
	if port == "" {
		port = DefaultForwardPort
	}
	tag := strings.ReplaceAll(strings.Trim(u.Path, "/"), "/", ".")
	return target{addr: net.JoinHostPort(u.Hostname(), port), tag: tag}, nil
}

// AuthError is a shared-key handshake that cannot succeed: waiting does
// not fix it.
type AuthError struct {
	URL, Cause, Fix string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("fluentd at %s: shared-key handshake failed: %s; %s", e.URL, e.Cause, e.Fix)
}

// Check implements Transport: a TLS connection and, with a shared key, the
// handshake; without one, it checks that Fluentd does not ask for one.
func (f *Forward) Check(ctx context.Context, rawURL string) error {
	t, err := parseTarget(rawURL)
	if err != nil {
		return err
	}
	key := f.sharedKey()
	c, err := f.dial(ctx, rawURL, t, key)
	if err != nil {
		return err
	}
	defer c.close()
	if len(key) > 0 {
		return nil // dial did the handshake
	}
	// With TLS 1.3 a refused client certificate arrives on the first read;
	// a HELO means Fluentd wants a key; silence is a server waiting for
	// messages.
	_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	var buf [1]byte
	if _, err := c.conn.Read(buf[:]); err != nil {
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return nil
		}
		return classifyHandshake(rawURL, err)
	}
	return &AuthError{URL: rawURL, Cause: "Fluentd asks for a shared key (its in_forward has a <security> section)",
		Fix: "give its shared_key in --fluentd-shared-key-file (or FDFWD_FLUENTD_SHARED_KEY)"}
}

// forwardConn is one TLS connection in its transport phase.
type forwardConn struct {
	conn *tls.Conn
	r    *msgp.Reader
	w    *msgp.Writer
}

func (c *forwardConn) close() { _ = c.conn.Close() }

// dial connects to t over TLS and, with a shared key, does the handshake.
// Errors are *TLSError, *AuthError or *UnreachableError.
func (f *Forward) dial(ctx context.Context, rawURL string, t target, key []byte) (*forwardConn, error) {
	nc, err := f.creds.dial(ctx, t.addr)
	if err != nil {
		return nil, classifyHandshake(rawURL, err)
	}
	c := &forwardConn{conn: nc}
	c.r, c.w = msgp.NewReader(c.conn), msgp.NewWriter(c.conn)
	if len(key) > 0 {
		// in_forward sends its HELO at once: a server that is silent for
		// HeloWait has no <security> section.
		_ = c.conn.SetDeadline(time.Now().Add(HeloWait))
		if err := f.handshake(rawURL, c, key); err != nil {
			c.close()
			return nil, err
		}
		_ = c.conn.SetDeadline(time.Time{})
	}
	return c, nil
}

// handshake answers the server's HELO with a PING and checks its PONG:
// the verdict, and the server's digest (proof that it knows the key too).
func (f *Forward) handshake(rawURL string, c *forwardConn, key []byte) error {
	var helo protocol.Helo
	if err := helo.DecodeMsg(c.r); err != nil {
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return &AuthError{URL: rawURL, Cause: "Fluentd sent no HELO (its in_forward has no <security> section)",
				Fix: "remove the shared key (--fluentd-shared-key-file, FDFWD_FLUENTD_SHARED_KEY), or add <security> with the same shared_key to in_forward"}
		}
		return classifyHandshake(rawURL, err)
	}
	if helo.Options == nil {
		return &AuthError{URL: rawURL, Cause: "Fluentd's HELO has no options", Fix: "check that the URL points at in_forward"}
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	_ = c.conn.SetDeadline(time.Now().Add(2 * HeloWait))
	ping, err := protocol.NewPing(f.opts.Hostname, key, salt, helo.Options.Nonce)
	if err != nil {
		return err
	}
	if err := ping.EncodeMsg(c.w); err != nil {
		return &UnreachableError{URL: rawURL, Err: err}
	}
	if err := c.w.Flush(); err != nil {
		return &UnreachableError{URL: rawURL, Err: err}
	}
	var pong protocol.Pong
	if err := pong.DecodeMsg(c.r); err != nil {
		return &AuthError{URL: rawURL, Cause: "Fluentd closed the connection after the PING (" + err.Error() + ")",
			Fix: "check the shared key (--fluentd-shared-key-file, FDFWD_FLUENTD_SHARED_KEY) against in_forward's shared_key (and any <user> it requires)"}
	}
	if !pong.AuthResult {
		return &AuthError{URL: rawURL, Cause: "Fluentd refused the key: " + pong.Reason,
			Fix: "put in_forward's shared_key in --fluentd-shared-key-file (or FDFWD_FLUENTD_SHARED_KEY)"}
	}
	if err := protocol.ValidatePongDigest(&pong, key, helo.Options.Nonce, salt); err != nil {
		return &AuthError{URL: rawURL, Cause: "the server's PONG does not prove it knows the shared key",
			Fix: "check that --fluentd-url points at your Fluentd"}
	}
	return nil
}
