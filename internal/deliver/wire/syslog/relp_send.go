package syslog

import (
	"context"
	"fmt"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

// relpSender is one connection actor's sender: a session per address.
type relpSender struct {
	t        *RELP
	sessions map[string]*session
	last     target
}

// Send implements wire.Sender: the events as a window of syslog commands,
// written at once, then their answers in order. The batch counts as
// delivered when every answer is 200; the first other answer judges it
// (the pool sends a rejected batch again one event at a time, so the
// events the receiver took before the rejected one arrive twice).
func (s *relpSender) Send(ctx context.Context, rawURL string, events [][]byte) wire.Result {
	addr, bad := s.last.check(rawURL, RELPScheme, RELPDefaultPort, events, s.t.opts.MaxMessage)
	if bad != nil {
		return *bad
	}
	sess := s.sessions[addr]
	if sess == nil {
		var err error
		if sess, err = s.t.open(ctx, rawURL, addr); err != nil {
			return wire.Result{Class: wire.Retry, Reason: err.Error()}
		}
		s.sessions[addr] = sess
	}
	res, broken := s.exchange(ctx, sess, events)
	if broken {
		_ = sess.conn.Close()
		delete(s.sessions, addr)
	}
	return res
}

// exchange writes the window and reads its answers; broken says the
// session cannot be used again.
func (s *relpSender) exchange(ctx context.Context, sess *session, events [][]byte) (wire.Result, bool) {
	defer watch(ctx, sess.conn)()
	first := sess.txnr + 1
	sess.w = sess.w[:0]
	for _, ev := range events {
		sess.w = appendFrame(sess.w, sess.next(), "syslog", ev)
	}
	_ = sess.conn.SetDeadline(timeNow().Add(s.t.opts.AckWait))
	if _, err := sess.conn.Write(sess.w); err != nil {
		return wire.Result{Class: wire.Retry, Reason: "relp: write: " + describe(ctx, err)}, true
	}
	verdict := wire.Result{Class: wire.Success, Status: 200}
	txnr := first
	for i := range events {
		if txnr > maxTxnr {
			txnr = 1
		}
		r, err := sess.answer(txnr)
		if err != nil {
			return wire.Result{Class: wire.Retry, Reason: fmt.Sprintf("relp: no answer to message %d of %d: %s", i+1, len(events), describe(ctx, err))}, true
		}
		if class := wire.Classify(r.code); class != wire.Success && verdict.Class == wire.Success {
			verdict = wire.Result{Class: class, Status: r.code,
				Reason: fmt.Sprintf("relp: the receiver answered message %d of %d with rsp %d %s", i+1, len(events), r.code, r.text)}
		}
		txnr++
	}
	return verdict, false
}

// Close implements wire.Sender.
func (s *relpSender) Close() {
	for addr, sess := range s.sessions {
		sess.close(s.t.opts.AckWait)
		delete(s.sessions, addr)
	}
}
