package syslog

import (
	"context"
	"fmt"
	"time"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

// held are the messages written to an address and not known received,
// oldest first; they outlive the connection they were written to.
type held struct {
	msgs [][]byte
	// drained[i] is when msgs[i] was seen to have left the send queue;
	// zero while not yet.
	drained []time.Time
}

func (h *held) add(events [][]byte) {
	h.msgs = append(h.msgs, events...)
	for range events {
		h.drained = append(h.drained, time.Time{})
	}
}

// unadd lets go of the last n messages added: their batch failed, and the
// pool sends it again.
func (h *held) unadd(n int) {
	clear(h.msgs[len(h.msgs)-n:])
	h.msgs, h.drained = h.msgs[:len(h.msgs)-n], h.drained[:len(h.drained)-n]
}

// settle marks every held message drained at now when the queue is empty,
// and lets go of those drained more than hold before now.
func (h *held) settle(queueEmpty bool, now time.Time, hold time.Duration) {
	if queueEmpty {
		for i := range h.drained {
			if h.drained[i].IsZero() {
				h.drained[i] = now
			}
		}
	}
	n := 0
	for n < len(h.msgs) && !h.drained[n].IsZero() && now.Sub(h.drained[n]) >= hold {
		n++
	}
	if n > 0 {
		clear(h.msgs[:n])
		h.msgs, h.drained = h.msgs[n:], h.drained[n:]
	}
}

// tlsSender is one connection actor's sender: a connection per address.
type tlsSender struct {
	t     *TLS
	conns map[string]*octetConn
	held  map[string]*held
	last  target
	buf   []byte
}

// Send implements wire.Sender: the held messages of a broken connection
// again on a new one, then the events, flushed; the batch counts as
// delivered once written (see the top of tls.go).
func (s *tlsSender) Send(ctx context.Context, rawURL string, events [][]byte) wire.Result {
	addr, bad := s.last.check(rawURL, TLSScheme, TLSDefaultPort, events, s.t.opts.MaxMessage)
	if bad != nil {
		return *bad
	}
	h := s.held[addr]
	if h == nil {
		h = &held{}
		s.held[addr] = h
	}
	c, err := s.conn(ctx, rawURL, addr, h)
	if err != nil {
		return wire.Result{Class: wire.Retry, Reason: "syslog: " + describe(ctx, err)}
	}
	if err := s.write(ctx, c, events); err != nil {
		s.drop(addr)
		return wire.Result{Class: wire.Retry, Reason: "syslog: write: " + describe(ctx, err)}
	}
	h.add(events)
	if err := s.confirm(ctx, c, h); err != nil {
		// The pool sends this batch again; the older held messages are
		// written again on the next connection.
		h.unadd(len(events))
		s.drop(addr)
		return wire.Result{Class: wire.Retry, Reason: "syslog: " + describe(ctx, err)}
	}
	return wire.Result{Class: wire.Success}
}

// conn is the connection to addr: the one open, or a new one on which the
// messages held from a broken one are written first.
func (s *tlsSender) conn(ctx context.Context, rawURL, addr string, h *held) (*octetConn, error) {
	c := s.conns[addr]
	if c != nil && !c.broken() {
		return c, nil
	}
	s.drop(addr)
	c, err := dialOctet(ctx, s.t, rawURL, addr)
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	if n := len(h.msgs); n > 0 {
		if err := s.write(ctx, c, h.msgs); err != nil {
			s.drop(addr)
			return nil, fmt.Errorf("resend of %d messages held from a broken connection: %w", n, err)
		}
		clear(h.drained) // written again: not drained on this connection yet
		if s.t.opts.OnResend != nil {
			s.t.opts.OnResend(addr, n)
		}
	}
	return c, nil
}

// write writes the messages in one write, within AckWait.
func (s *tlsSender) write(ctx context.Context, c *octetConn, msgs [][]byte) error {
	defer watch(ctx, c.conn)()
	s.buf = s.buf[:0]
	for _, m := range msgs {
		s.buf = appendOctet(s.buf, m)
	}
	_ = c.conn.SetWriteDeadline(timeNow().Add(s.t.opts.AckWait))
	_, err := c.conn.Write(s.buf)
	if cap(s.buf) > 1<<20 {
		s.buf = nil // a resend's buffer is not kept
	}
	return err
}

// confirm settles the held messages and, while more than Unconfirmed are
// held, waits (within AckWait) for the oldest to be known received.
func (s *tlsSender) confirm(ctx context.Context, c *octetConn, h *held) error {
	deadline := timeNow().Add(s.t.opts.AckWait)
	for {
		h.settle(queueEmpty(c.conn), timeNow(), s.t.opts.Hold)
		if len(h.msgs) <= s.t.opts.Unconfirmed {
			return nil
		}
		if c.broken() {
			return fmt.Errorf("the connection broke with %d messages not known received; they are sent again", len(h.msgs))
		}
		if !timeNow().Before(deadline) {
			return fmt.Errorf("%d messages written and not known received after %s (the receiver does not read them)", len(h.msgs), s.t.opts.AckWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(drainPoll):
		}
	}
}

func (s *tlsSender) drop(addr string) {
	if c := s.conns[addr]; c != nil {
		c.close()
		delete(s.conns, addr)
	}
}

// closeWait bounds Close, which the daemon's stop waits for.
const closeWait = 5 * time.Second

// Close implements wire.Sender: each connection's held messages get a last
// chance (within closeWait) to be known received, on a new connection if
// the old one broke, before it is closed.
func (s *tlsSender) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.t.opts.AckWait, closeWait))
	defer cancel()
	for addr, h := range s.held {
		if len(h.msgs) > 0 {
			if c, err := s.conn(ctx, "syslog+tls://"+addr, addr, h); err == nil {
				s.flushHeld(ctx, c, h)
			}
		}
		s.drop(addr)
		delete(s.held, addr)
	}
}

// flushHeld waits until the held messages left the send queue and stayed
// on an open connection for Hold, or ctx ends.
func (s *tlsSender) flushHeld(ctx context.Context, c *octetConn, h *held) {
	for len(h.msgs) > 0 && !c.broken() {
		h.settle(queueEmpty(c.conn), timeNow(), s.t.opts.Hold)
		select {
		case <-ctx.Done():
			return
		case <-time.After(drainPoll):
		}
	}
}
