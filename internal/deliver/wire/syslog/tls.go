package syslog

import (
	"context"
	"crypto/tls"
	"strconv"
	"time"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

// Plain syslog over TLS has no acknowledgement: a batch counts as
// delivered once it is written and flushed, and a connection that breaks
// after that may take messages with it (into a receiver that stopped
// before reading them from its socket). The transport narrows that window
// as the careful senders do:
//
//   - A reader watches each connection: a syslog receiver never sends, so
//     anything it reads is the peer closing or resetting it, noticed at
//     once rather than at the next write.
//   - Every message stays held after it is written until it is known
//     received: the kernel's send queue drained (the receiver's TCP took
//     it) and the connection still open Hold later (a receiver that shuts
//     down closes its connections as it stops reading).
//   - When a connection breaks, the next send opens another and writes
//     the held messages again first: duplicates, accepted, rather than
//     losses.
//   - At most Unconfirmed messages are held per connection: past that a
//     send waits for the oldest to be known received.
//
// What is left is a receiver that dies (kill -9, a power cut) with
// messages read from its socket and not yet written out, and the daemon
// killed while messages are held: use relp+tls:// when nothing may be lost.

// Unconfirmed is the default of Options.Unconfirmed.
const Unconfirmed = 20_000

// DefaultHold is the default of Options.Hold.
const DefaultHold = time.Second

// drainPoll is the pause between looks at a send queue being drained.
const drainPoll = 2 * time.Millisecond

// TLS is the syslog+tls:// transport.
type TLS struct {
	creds *wire.Credentials
	opts  Options
}

// NewTLS returns the syslog+tls:// transport over mTLS with creds.
func NewTLS(creds *wire.Credentials, opts Options) *TLS {
	return &TLS{creds: creds, opts: opts.withDefaults()}
}

// Check implements wire.Transport: a TLS connection, and the first read
// that carries a refusal of the client certificate under TLS 1.3.
func (t *TLS) Check(ctx context.Context, rawURL string) error {
	addr, err := addrOf(rawURL, TLSScheme, TLSDefaultPort)
	if err != nil {
		return err
	}
	return refusedTwice(ctx, rawURL, "the CA of imtcp's stream driver, DefaultNetstreamDriverCAFile", func() error {
		return wire.CheckAt(ctx, rawURL, addr, t.creds)
	})
}

// Close implements wire.Transport; the senders own their connections.
func (t *TLS) Close() {}

// NewSender implements wire.Transport.
func (t *TLS) NewSender() wire.Sender {
	return &tlsSender{t: t, conns: map[string]*octetConn{}, held: map[string]*held{}}
}

// octetConn is one connection and the reader that watches it.
type octetConn struct {
	conn *tls.Conn
	gone chan struct{} // closed by the reader once the peer closed or failed
}

func dialOctet(ctx context.Context, t *TLS, rawURL, addr string) (*octetConn, error) {
	conn, err := t.creds.Dial(ctx, addr)
	if err != nil {
		return nil, wire.ClassifyHandshake(rawURL, err)
	}
	c := &octetConn{conn: conn, gone: make(chan struct{})}
	go c.watch()
	return c, nil
}

// watch reads until the connection ends: a syslog receiver sends nothing.
func (c *octetConn) watch() {
	defer close(c.gone)
	var b [256]byte
	for {
		if _, err := c.conn.Read(b[:]); err != nil {
			return
		}
	}
}

func (c *octetConn) broken() bool {
	select {
	case <-c.gone:
		return true
	default:
		return false
	}
}

func (c *octetConn) close() {
	_ = c.conn.Close()
	<-c.gone
}

// appendOctet frames a message: its length, a space, the message.
func appendOctet(b, msg []byte) []byte {
	b = strconv.AppendInt(b, int64(len(msg)), 10)
	return append(append(b, ' '), msg...)
}
