package syslog

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

// RELP is the relp+tls:// transport: each batch is written as a window of
// syslog commands in one write, and counts as delivered only once the
// receiver answered every one of them with rsp 200. An answer other than
// 2xx is judged by its code as an HTTP status is (wire.Classify): 4xx
// rejects the events, 5xx (rsyslog's 500 for a message it cannot take)
// and a broken or silent session are retried, a few codes say the
// receiver refuses service.
type RELP struct {
	creds *wire.Credentials
	opts  Options
}

// NewRELP returns the RELP transport over mTLS with creds.
func NewRELP(creds *wire.Credentials, opts Options) *RELP {
	return &RELP{creds: creds, opts: opts.withDefaults()}
}

// Close implements wire.Transport; the senders own their sessions.
func (t *RELP) Close() {}

// Check implements wire.Transport: a TLS connection and RELP's open, whose
// answer says a RELP server is there and takes syslog commands.
func (t *RELP) Check(ctx context.Context, rawURL string) error {
	addr, err := addrOf(rawURL, RELPScheme, RELPDefaultPort)
	if err != nil {
		return err
	}
	return refusedTwice(ctx, rawURL, "imrelp's tls.caCert", func() error {
		s, err := t.open(ctx, rawURL, addr)
		if err == nil {
			s.close(t.opts.AckWait)
		}
		return err
	})
}

// NewSender implements wire.Transport: one session per address, opened on
// first use and again after a failure.
func (t *RELP) NewSender() wire.Sender {
	return &relpSender{t: t, sessions: map[string]*session{}}
}

// session is one RELP session.
type session struct {
	conn *tls.Conn
	r    *bufio.Reader
	w    []byte // the frames of a batch, written at once
	txnr int    // the last transaction number used
}

func (s *session) next() int {
	if s.txnr++; s.txnr > maxTxnr {
		s.txnr = 1
	}
	return s.txnr
}

// open dials addr and opens a session. A server that does not answer the
// open, or answers it with anything but 200 and the syslog command, is
// an *wire.UnreachableError that names the likely cause.
func (t *RELP) open(ctx context.Context, rawURL, addr string) (*session, error) {
	conn, err := t.creds.Dial(ctx, addr)
	if err != nil {
		return nil, wire.ClassifyHandshake(rawURL, err)
	}
	s := &session{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	offers := "relp_version=0\nrelp_software=" + t.opts.Software + "\ncommands=syslog"
	defer watch(ctx, conn)()
	_ = conn.SetDeadline(time.Now().Add(t.opts.AckWait))
	_, err = conn.Write(appendFrame(nil, s.next(), "open", []byte(offers)))
	var r rsp
	if err == nil {
		r, err = s.answer(s.txnr)
	}
	switch {
	case closedEarly(err):
		_ = conn.Close()
		return nil, &wire.UnreachableError{URL: rawURL, Err: fmt.Errorf("%w: %w", errClosedAtOpen, err)}
	case err != nil:
		_ = conn.Close()
		var nerr interface{ Timeout() bool }
		if errors.As(err, &nerr) && nerr.Timeout() {
			err = fmt.Errorf("no answer to RELP's open within %s: is this an imrelp input? (an imtcp port takes the open for a message and says nothing)", t.opts.AckWait)
		}
		return nil, wire.ClassifyHandshake(rawURL, err)
	case r.code != 200 || !offersSyslog(r.offers):
		_ = conn.Close()
		return nil, &wire.UnreachableError{URL: rawURL, Err: fmt.Errorf("the RELP server refused the session: rsp %d %s (offers %q)", r.code, r.text, r.offers)}
	}
	_ = conn.SetDeadline(time.Time{})
	return s, nil
}

func offersSyslog(offers string) bool {
	for _, line := range strings.Split(offers, "\n") {
		if cmds, ok := strings.CutPrefix(line, "commands="); ok {
			for _, c := range strings.Split(cmds, ",") {
				if strings.TrimSpace(c) == "syslog" {
					return true
				}
			}
		}
	}
	return false
}

// answer reads the rsp to transaction txnr. A serverclose (the receiver
// shuts down) or any other frame fails the session.
func (s *session) answer(txnr int) (rsp, error) {
	if s.r.Buffered() == 0 {
		quickAck(s.conn)
	}
	f, err := readFrame(s.r)
	if err != nil {
		return rsp{}, err
	}
	switch {
	case f.cmd == "serverclose":
		return rsp{}, errors.New("the RELP server closed the session (serverclose): it is shutting down")
	case f.cmd != "rsp":
		return rsp{}, fmt.Errorf("the RELP server sent %q where the answer to transaction %d was due", f.cmd, txnr)
	case f.txnr != txnr:
		return rsp{}, fmt.Errorf("the RELP server answered transaction %d where %d was due", f.txnr, txnr)
	}
	return parseRsp(f.data)
}

// close ends the session politely: close, and its answer if it comes soon.
func (s *session) close(wait time.Duration) {
	_ = s.conn.SetDeadline(time.Now().Add(min(wait, time.Second)))
	if _, err := s.conn.Write(appendFrame(nil, s.next(), "close", nil)); err == nil {
		_, _ = s.answer(s.txnr)
	}
	_ = s.conn.Close()
}
