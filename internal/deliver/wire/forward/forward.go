// Package forward is the transport to Fluentd's forward input (in_forward)
// over TLS: events as msgpack records in PackedForward (or, compressed,
// CompressedPackedForward) messages, each acknowledged by its chunk, the
// HELO/PING/PONG handshake with the shared key read again per connection,
// and bounded reads of everything the server sends.
package forward

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	"github.com/tinylib/msgp/msgp"
)

// Scheme is the URL scheme of Fluentd's forward protocol
// (in_forward), always over TLS with the client certificate.
const Scheme = "forward"

// DefaultPort is in_forward's port when a forward URL names none.
const DefaultPort = "24224"

// HeloWait bounds the wait for the server's HELO, and then for its PONG.
// in_forward with a <security> section sends its HELO as soon as the TLS
// handshake is done, so a connection silent this long is a Fluentd too
// busy to answer or one without <security>: the first is retried (an
// *wire.UnreachableError), and only a second connection in a row to the same
// address that is silent for the whole wait is taken for the missing
// section (an *AuthError, which stops a start).
const HeloWait = 10 * time.Second

// MaxServerMessage bounds each message read from the server (a HELO, a
// PONG, an ack: Fluentd's take a few hundred bytes at most) and each
// string, binary or list in it: a length announced past it fails the
// connection before anything is allocated for it, and so do more bytes
// than this in one message.
const MaxServerMessage = 4 << 10

// AckWait bounds the wait for the ack of a message written in full. in_forward
// acks once the events are in its buffer, in milliseconds; it drops a
// message over its chunk_size_limit without an answer, so a wait as long
// as an HTTP request's (RequestTimeout) would make finding such a message
// take minutes.
const AckWait = 10 * time.Second

// DefaultMaxMessage is the default of Options.MaxMessage (and of
// --fluentd-max-message-kb): Fluentd's default buffer chunk size
// (chunk_limit_size 8MB), which a message must fit in to be stored.
const DefaultMaxMessage = 8 << 20

// maxServerDepth bounds the nesting of a server message (msgp skips unknown
// fields recursively).
const maxServerDepth = 8

// Options configure the forward transport.
type Options struct {
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
	// MaxMessage is the most bytes one message may take on the wire
	// (in_forward's chunk_size_limit, which drops a larger message without
	// an ack); a batch that would be larger is wire.TooLarge. Zero: no limit.
	MaxMessage int
	// AckWait bounds the wait for an ack (AckWait when zero).
	AckWait time.Duration
}

// Transport is the transport to Fluentd's in_forward: each batch is one
// PackedForward message with a chunk id, confirmed by the server's ack for
// that chunk; no ack within AckWait, a reset or a close means the batch is
// sent again on a fresh connection (see wire.Result.NoAck).
//
// The message types, chunk ids, EventTime and the handshake's digests are
// github.com/IBM/fluent-forward-go's. Its Client is not used: it ignores
// the PONG's verdict and reason (a wrong key reads as "no match"), and
// puts no deadline on writes or on the handshake, so a stalled server
// would hold a connection for ever. Nor is its gzip helper (see
// forwardSender.gzip).
type Transport struct {
	creds    *wire.Credentials
	opts     Options
	heloWait time.Duration // HeloWait; shorter in tests

	mu  sync.Mutex
	key []byte // the shared key of the moment, from opts.SharedKeyFile
	// silent holds the addresses whose last connection sent no HELO.
	silent map[string]bool
}

// New returns a forward transport over mTLS with creds.
func New(creds *wire.Credentials, opts Options) *Transport {
	if opts.AckWait <= 0 {
		opts.AckWait = AckWait
	}
	return &Transport{creds: creds, opts: opts, heloWait: HeloWait, key: opts.SharedKey, silent: map[string]bool{}}
}

// sharedKey is the key for a new connection: the file's, or the last one
// read when it cannot be read or is empty.
func (f *Transport) sharedKey() []byte {
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

// Close implements wire.Transport; the senders own their connections.
func (f *Transport) Close() {}

// NewSender implements Transport: one connection per address, opened on
// first use and again after a failure.
func (f *Transport) NewSender() wire.Sender {
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
	if u.Scheme != Scheme {
		return target{}, fmt.Errorf("%s is not a %s:// URL", raw, Scheme)
	}
	port := u.Port()
	if port == "" {
		port = DefaultPort
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

// wire.Check implements Transport: a TLS connection and, with a shared key, the
// handshake; without one, it checks that Fluentd does not ask for one.
func (f *Transport) Check(ctx context.Context, rawURL string) error {
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
		return wire.ClassifyHandshake(rawURL, err)
	}
	return &AuthError{URL: rawURL, Cause: "Fluentd asks for a shared key (its in_forward has a <security> section)",
		Fix: "give its shared_key in --fluentd-shared-key-file (or FDFWD_FLUENTD_SHARED_KEY)"}
}

// forwardConn is one TLS connection in its transport phase.
type forwardConn struct {
	conn *tls.Conn
	in   *budget // under r: what the server's next message may still take
	r    *msgp.Reader
	w    *msgp.Writer
	// keepalive is false when the server's HELO said so: it closes the
	// connection after each ack.
	keepalive bool
}

// errTooLarge is a server message past MaxServerMessage.
var errTooLarge = fmt.Errorf("a message from the server announces or holds more than %d bytes, the most a forward reply may take (MaxServerMessage)", MaxServerMessage)

func newForwardConn(nc *tls.Conn) *forwardConn {
	c := &forwardConn{conn: nc, in: &budget{r: nc}, w: msgp.NewWriter(nc), keepalive: true}
	// msgp allocates a string or binary of the length its header announces
	// before reading it: its limits refuse a length past them first.
	c.r = msgp.NewReader(c.in)
	c.r.SetMaxStringLength(MaxServerMessage)
	c.r.SetMaxElements(MaxServerMessage)
	c.r.SetMaxRecursionDepth(maxServerDepth)
	return c
}

// read decodes the server's next message into m; past MaxServerMessage
// the error is errTooLarge.
func (c *forwardConn) read(m msgp.Decodable) error {
	c.in.left = MaxServerMessage
	err := m.DecodeMsg(c.r)
	if errors.Is(err, msgp.ErrLimitExceeded) || errors.Is(err, msgp.ErrRecursion) || errors.Is(err, errTooLarge) {
		return errTooLarge
	}
	return err
}

func (c *forwardConn) close() { _ = c.conn.Close() }

// budget passes at most left bytes, then fails: the limits of msgp.Reader
// bound what one field allocates, this what one message reads (the fields
// msgp skips unread, say).
type budget struct {
	r    io.Reader
	left int
}

func (b *budget) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errTooLarge
	}
	if len(p) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= n
	return n, err
}

// dial connects to t over TLS and, with a shared key, does the handshake.
// Errors are *wire.TLSError, *AuthError or *wire.UnreachableError.
func (f *Transport) dial(ctx context.Context, rawURL string, t target, key []byte) (*forwardConn, error) {
	nc, err := f.creds.Dial(ctx, t.addr)
	if err != nil {
		return nil, wire.ClassifyHandshake(rawURL, err)
	}
	c := newForwardConn(nc)
	if len(key) > 0 {
		if err := f.handshake(ctx, rawURL, t, c, key); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// handshake answers the server's HELO with a PING and checks its PONG,
// each within heloWait; a stop cuts the wait short.
func (f *Transport) handshake(ctx context.Context, rawURL string, t target, c *forwardConn, key []byte) error {
	defer context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })()
	_ = c.conn.SetDeadline(time.Now().Add(f.heloWait))
	helo, err := f.readHelo(ctx, rawURL, t, c)
	if err != nil {
		return err
	}
	c.keepalive = helo.Options.Keepalive
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return err
	}
	_ = c.conn.SetDeadline(time.Now().Add(f.heloWait))
	ping, err := protocol.NewPing(f.opts.Hostname, key, salt, helo.Options.Nonce)
	if err != nil {
		return err
	}
	if err := ping.EncodeMsg(c.w); err != nil {
		return &wire.UnreachableError{URL: rawURL, Err: err}
	}
	if err := c.w.Flush(); err != nil {
		return &wire.UnreachableError{URL: rawURL, Err: err}
	}
	if err := f.checkPong(ctx, rawURL, c, key, helo.Options.Nonce, salt); err != nil {
		return err
	}
	_ = c.conn.SetDeadline(time.Time{})
	return nil
}

// readHelo reads the server's HELO. A connection silent for the whole
// wait is retried the first time (a busy Fluentd) and taken for a missing
// <security> section the second time in a row.
func (f *Transport) readHelo(ctx context.Context, rawURL string, t target, c *forwardConn) (*protocol.Helo, error) {
	var helo protocol.Helo
	err := c.read(&helo)
	switch {
	case err == nil:
		f.silentAgain(t.addr, false)
	case ctx.Err() != nil: // cut short: not silent for the whole wait
		return nil, &wire.UnreachableError{URL: rawURL, Err: ctx.Err()}
	case isTimeout(err) && f.silentAgain(t.addr, true):
		return nil, &AuthError{URL: rawURL, Cause: fmt.Sprintf("Fluentd sent no HELO within %s on two connections in a row (its in_forward has no <security> section)", f.heloWait),
			Fix: "remove the shared key (--fluentd-shared-key-file, FDFWD_FLUENTD_SHARED_KEY), or add <security> with the same shared_key to in_forward"}
	case isTimeout(err):
		return nil, &wire.UnreachableError{URL: rawURL, Err: fmt.Errorf("no HELO within %s of the TLS handshake (a busy Fluentd, or an in_forward without <security>: a second silent connection tells): %w", f.heloWait, err)}
	case errors.Is(err, errTooLarge):
		return nil, &AuthError{URL: rawURL, Cause: "the HELO is not Fluentd's: " + err.Error(), Fix: "check that --fluentd-url points at Fluentd's in_forward"}
	default:
		return nil, wire.ClassifyHandshake(rawURL, err)
	}
	if helo.Options == nil {
		return nil, &AuthError{URL: rawURL, Cause: "Fluentd's HELO has no options", Fix: "check that the URL points at in_forward"}
	}
	return &helo, nil
}

// silentAgain records whether addr's latest connection went without a
// HELO, and says whether the one before it did too.
func (f *Transport) silentAgain(addr string, silent bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.silent[addr]
	if silent {
		f.silent[addr] = true
	} else {
		delete(f.silent, addr)
	}
	return before
}

func isTimeout(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// checkPong reads the PONG and checks the verdict, then the server's
// digest: sha512 of our salt, its hostname, its nonce and the key. That
// proves the server knows the key only for a hostname other than ours:
// over ours it is the digest of our own PING, which a server that echoes
// the PING sends back without knowing the key. Fluentd's out_forward
// refuses its own hostname in a PONG for the same reason.
func (f *Transport) checkPong(ctx context.Context, rawURL string, c *forwardConn, key, nonce, salt []byte) error {
	var pong protocol.Pong
	if err := c.read(&pong); err != nil {
		switch {
		case ctx.Err() != nil:
			return &wire.UnreachableError{URL: rawURL, Err: ctx.Err()}
		case isTimeout(err): // a busy Fluentd: it answers a wrong key with a PONG
			return &wire.UnreachableError{URL: rawURL, Err: fmt.Errorf("no PONG within %s of the PING: %w", f.heloWait, err)}
		case errors.Is(err, errTooLarge):
			return &AuthError{URL: rawURL, Cause: "the PONG is not Fluentd's: " + err.Error(), Fix: "check that --fluentd-url points at Fluentd's in_forward"}
		}
		return &AuthError{URL: rawURL, Cause: "Fluentd closed the connection after the PING (" + err.Error() + ")",
			Fix: "check the shared key (--fluentd-shared-key-file, FDFWD_FLUENTD_SHARED_KEY) against in_forward's shared_key (and any <user> it requires)"}
	}
	if !pong.AuthResult {
		return &AuthError{URL: rawURL, Cause: "Fluentd refused the key: " + pong.Reason,
			Fix: "put in_forward's shared_key in --fluentd-shared-key-file (or FDFWD_FLUENTD_SHARED_KEY)"}
	}
	if pong.ServerHostname == f.opts.Hostname {
		return &AuthError{URL: rawURL, Cause: fmt.Sprintf("the server's PONG names this daemon's own hostname %q, so its digest proves nothing (a server echoing the PING would send it; Fluentd refuses it too: same hostname between input and output)", pong.ServerHostname),
			Fix: "check that --fluentd-url points at your Fluentd, and that in_forward's self_hostname is not this host's name"}
	}
	if err := protocol.ValidatePongDigest(&pong, key, nonce, salt); err != nil {
		return &AuthError{URL: rawURL, Cause: "the server's PONG does not prove it knows the shared key",
			Fix: "check that --fluentd-url points at your Fluentd"}
	}
	return nil
}
