package forward

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"time"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
)

// forwardSender is one connection actor's sender: a connection per
// address, and the buffers of its messages.
type forwardSender struct {
	f       *Transport
	conns   map[string]*forwardConn
	lastRaw string
	last    target
	entries entries
	// The gzip writer and buffer of CompressedPackedForward messages, the
	// sender's own: the library's pooled compressor hands back a buffer it
	// has already returned to its pool, so that a concurrent message could
	// carry another's events under its chunk id.
	zw   *gzip.Writer
	zbuf bytes.Buffer
}

// Send implements Sender: events go as one PackedForward message (gzip
// compressed with Options.Gzip) with a fresh chunk id, and count as
// delivered only once the server acks that chunk.
func (s *forwardSender) Send(ctx context.Context, rawURL string, events [][]byte) wire.Result {
	if rawURL != s.lastRaw {
		t, err := parseTarget(rawURL)
		if err != nil {
			return wire.Result{Class: wire.Permanent, Reason: fmt.Sprintf("build message: %v", err)}
		}
		s.lastRaw, s.last = rawURL, t
	}
	stream, err := s.entries.encode(events, time.Now())
	if err != nil {
		return wire.Result{Class: wire.Permanent, Reason: err.Error()}
	}
	msg, err := s.message(stream, len(events))
	if err != nil {
		return wire.Result{Class: wire.Permanent, Reason: fmt.Sprintf("build message: %v", err)}
	}
	if most := s.f.opts.MaxMessage; most > 0 && msg.Msgsize() > most {
		return wire.Result{Class: wire.TooLarge, Reason: fmt.Sprintf("%d event(s) make a forward message of %d bytes, over the %d that --fluentd-max-message-kb allows (in_forward's chunk_size_limit drops a larger message without an answer)",
			len(events), msg.Msgsize(), most)}
	}
	c, res := s.conn(ctx, rawURL)
	if c == nil {
		return res
	}
	if err := exchange(ctx, c, msg, s.f.opts.AckWait); err != nil {
		s.drop(s.last.addr)
		return wire.Result{Class: wire.Retry, Reason: err.Error(), NoAck: errors.Is(err, errNoAck)}
	}
	if !c.keepalive {
		// The server closes the connection after each ack (in_forward's
		// deny_keepalive): the next message goes on a new one.
		s.drop(s.last.addr)
	}
	return wire.Result{Class: wire.Success}
}

// message is the PackedForward (or CompressedPackedForward) message of an
// entry stream, with a new chunk id.
func (s *forwardSender) message(stream []byte, n int) (*protocol.PackedForwardMessage, error) {
	opts := &protocol.MessageOptions{}
	if s.f.opts.Gzip {
		var err error
		if stream, err = s.gzip(stream); err != nil {
			return nil, err
		}
		opts.Compressed = protocol.OptValGZIP
	}
	msg := protocol.NewPackedForwardMessageFromBytes(s.last.tag, stream)
	msg.Options = opts
	msg.Options.Size = &n
	_, err := msg.Chunk()
	return msg, err
}

// gzip compresses stream into the sender's buffer, valid until the next
// message.
func (s *forwardSender) gzip(stream []byte) ([]byte, error) {
	s.zbuf.Reset()
	if s.zw == nil {
		s.zw = gzip.NewWriter(&s.zbuf)
	} else {
		s.zw.Reset(&s.zbuf)
	}
	if _, err := s.zw.Write(stream); err != nil {
		return nil, err
	}
	if err := s.zw.Close(); err != nil {
		return nil, err
	}
	return s.zbuf.Bytes(), nil
}

// conn is the open connection to the current target, dialled if needed; on
// failure the wire.Result says why (a refused key is Refused: nothing is sent
// until it is fixed, and nothing is dead-lettered).
func (s *forwardSender) conn(ctx context.Context, rawURL string) (*forwardConn, wire.Result) {
	if c := s.conns[s.last.addr]; c != nil {
		return c, wire.Result{}
	}
	c, err := s.f.dial(ctx, rawURL, s.last, s.f.sharedKey())
	var auth *AuthError
	switch {
	case errors.As(err, &auth):
		return nil, wire.Result{Class: wire.Refused, Reason: err.Error()}
	case err != nil:
		return nil, wire.Result{Class: wire.Retry, Reason: err.Error()}
	}
	s.conns[s.last.addr] = c
	return c, wire.Result{}
}

// errNoAck is an exchange whose message was written in full and not
// answered within the wait.
var errNoAck = errors.New("no answer")

// exchange writes msg and waits for its ack, within wait (or ctx's
// deadline, when sooner).
func exchange(ctx context.Context, c *forwardConn, msg *protocol.PackedForwardMessage, wait time.Duration) error {
	deadline, full := time.Now().Add(wait), true
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, full = d, false
	}
	_ = c.conn.SetDeadline(deadline)
	// A stop cuts the wait short; the connection is dropped after it.
	defer context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })()
	if err := msg.EncodeMsg(c.w); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	var ack protocol.AckMessage
	if err := c.read(&ack); err != nil {
		if isTimeout(err) && full && ctx.Err() == nil { // silent for the whole wait
			return fmt.Errorf("no ack for chunk %s within %s: %w", msg.Options.Chunk, wait, errNoAck)
		}
		return fmt.Errorf("no ack for chunk %s: %w", msg.Options.Chunk, err)
	}
	if ack.Ack != msg.Options.Chunk {
		return fmt.Errorf("ack for chunk %q while waiting for %q", ack.Ack, msg.Options.Chunk)
	}
	return nil
}

func (s *forwardSender) drop(addr string) {
	if c := s.conns[addr]; c != nil {
		c.close()
		delete(s.conns, addr)
	}
}

// Close implements wire.Sender.
func (s *forwardSender) Close() {
	for addr := range s.conns {
		s.drop(addr)
	}
}
