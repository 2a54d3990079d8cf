package rsyslogsrv

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ScriptedRELP is a RELP server over TLS whose answer to each syslog
// command the test sets, for what rsyslog does not do on demand: refuse
// messages with an error code. It answers like librelp 1.11 (rsyslog's
// imrelp), as observed here: open with 200 OK and its offers, close with
// an rsp without data then serverclose, Close with serverclose to every
// session.
type ScriptedRELP struct {
	ln  net.Listener
	url string
	wg  sync.WaitGroup

	mu         sync.Mutex
	code       int
	text       string
	msgs       []string // answered 200
	refused    int      // answered anything else
	opens      int
	handshakes int // failed TLS handshakes
	err        error
	conns      map[*relpConn]struct{}
	closed     bool
}

type relpConn struct {
	c      *tls.Conn
	opened atomic.Bool // open answered: Close sends serverclose
	wmu    sync.Mutex  // a session's answers and Close's serverclose
}

// The bounds of a scripted session.
const (
	// MaxData is the largest DATA of a frame the server reads: more than
	// any maxMessageSize the daemon's users are likely to set (rsyslog's
	// default is 8k); a larger frame ends the session.
	MaxData = 256 << 10
	// relpIdle is how long a session may send nothing before the server
	// closes it; relpWrite bounds each write, relpHandshake the TLS
	// handshake.
	relpIdle      = 2 * time.Minute
	relpWrite     = 10 * time.Second
	relpHandshake = 10 * time.Second
)

// relpOffers is what the server offers in its answer to open.
const relpOffers = "relp_version=0\nrelp_software=teleport-event-handler-rsyslogsrv\ncommands=syslog"

// NewScriptedRELP listens on 127.0.0.1 with cfg, which must have the
// clients' CA in ClientCAs: client certificates are required and verified
// against it. It answers syslog commands 200 OK until SetAnswer.
func NewScriptedRELP(cfg *tls.Config) (*ScriptedRELP, error) {
	if cfg == nil || cfg.ClientCAs == nil || len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
		return nil, errors.New("rsyslogsrv: ScriptedRELP needs a server certificate and ClientCAs")
	}
	tc := cfg.Clone()
	tc.ClientAuth = tls.RequireAndVerifyClientCert
	if tc.MinVersion == 0 {
		tc.MinVersion = tls.VersionTLS12
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		return nil, fmt.Errorf("rsyslogsrv: ScriptedRELP: listen: %w", err)
	}
	s := &ScriptedRELP{
		ln:    ln,
		url:   "relp+tls://" + ln.Addr().String(),
		code:  200,
		text:  "OK",
		conns: map[*relpConn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// StartScriptedRELP is NewScriptedRELP failing t on an error, closed when
// the test ends.
func StartScriptedRELP(t testing.TB, cfg *tls.Config) *ScriptedRELP {
	t.Helper()
	s, err := NewScriptedRELP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// URL is the daemon's URL of the server.
func (s *ScriptedRELP) URL() string { return s.url }

// Addr is the server's host:port.
func (s *ScriptedRELP) Addr() string { return s.ln.Addr().String() }

// SetAnswer sets the code and text of the answers to the syslog commands
// from now on; 200 records the message.
func (s *ScriptedRELP) SetAnswer(code int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.code, s.text = code, text
}

// Messages are the messages answered 200, in order.
func (s *ScriptedRELP) Messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// Refused counts the syslog commands answered with another code.
func (s *ScriptedRELP) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Opens counts the sessions opened (open answered 200).
func (s *ScriptedRELP) Opens() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens
}

// HandshakeFailures counts the TLS handshakes that failed, such as a
// client's without a certificate.
func (s *ScriptedRELP) HandshakeFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handshakes
}

// Err is the first protocol error a client made (a malformed or oversized
// frame, a command before open, an unknown command), nil if none.
func (s *ScriptedRELP) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close sends serverclose to every session, closes them and the listener,
// and returns when every goroutine of the server ended.
func (s *ScriptedRELP) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	conns := make([]*relpConn, 0, len(s.conns))
	for rc := range s.conns {
		conns = append(conns, rc)
	}
	s.mu.Unlock()
	for _, rc := range conns {
		if rc.opened.Load() {
			rc.send(serverclose) // an error: the session is gone already
		}
		rc.c.Close()
	}
	// Every read and write has a deadline: this wait ends.
	s.wg.Wait()
}

func (s *ScriptedRELP) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		rc := &relpConn{c: c.(*tls.Conn)}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[rc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(rc)
	}
}

func (rc *relpConn) send(f frame) error {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	rc.c.SetWriteDeadline(time.Now().Add(relpWrite))
	_, err := rc.c.Write(appendFrame(nil, f))
	return err
}

// serve runs one session until close, an error or Close.
func (s *ScriptedRELP) serve(rc *relpConn) {
	defer s.wg.Done()
	defer func() {
		rc.c.Close()
		s.mu.Lock()
		delete(s.conns, rc)
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), relpHandshake)
	err := rc.c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.mu.Lock()
		if !s.closed { // not Close's doing
			s.handshakes++
		}
		s.mu.Unlock()
		return
	}
	r := bufio.NewReader(rc.c)
	for {
		rc.c.SetReadDeadline(time.Now().Add(relpIdle))
		f, err := readFrame(r, MaxData)
		if err != nil {
			if errors.Is(err, errFrame) || errors.Is(err, io.ErrUnexpectedEOF) {
				s.fail(err)
			}
			return
		}
		if !s.answer(rc, f) {
			return
		}
	}
}

// answer answers f, and tells whether the session goes on.
func (s *ScriptedRELP) answer(rc *relpConn, f frame) bool {
	switch opened := rc.opened.Load(); {
	case !opened && f.cmd != "open":
		s.fail(fmt.Errorf("%q before open", f.cmd))
		rc.send(frame{txnr: f.txnr, cmd: "rsp", data: []byte("500 session not opened")})
		return false
	case !opened:
		if err := checkOffers(f.data); err != nil {
			s.fail(err)
			rc.send(frame{txnr: f.txnr, cmd: "rsp", data: []byte("500 " + err.Error())})
			return false
		}
		s.mu.Lock()
		s.opens++
		s.mu.Unlock()
		rc.opened.Store(true)
		return rc.send(frame{txnr: f.txnr, cmd: "rsp", data: []byte("200 OK\n" + relpOffers)}) == nil
	case f.cmd == "syslog":
		code, text := s.record(string(f.data))
		return rc.send(frame{txnr: f.txnr, cmd: "rsp", data: fmt.Appendf(nil, "%d %s", code, text)}) == nil
	case f.cmd == "close":
		// As librelp: an answer without data, then serverclose.
		rc.send(frame{txnr: f.txnr, cmd: "rsp"})
		rc.send(serverclose)
		return false
	default:
		s.fail(fmt.Errorf("unknown command %q", f.cmd))
		return rc.send(frame{txnr: f.txnr, cmd: "rsp", data: []byte("500 invalid command")}) == nil
	}
}

// record answers a syslog command with the answer of the moment.
func (s *ScriptedRELP) record(msg string) (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.code == 200 {
		s.msgs = append(s.msgs, msg)
	} else {
		s.refused++
	}
	return s.code, s.text
}

func (s *ScriptedRELP) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && !s.closed {
		s.err = fmt.Errorf("rsyslogsrv: ScriptedRELP: %w", err)
	}
}

// checkOffers checks a client's open: relp_version and a commands offer
// that has syslog.
func checkOffers(data []byte) error {
	var version, syslog bool
	for _, line := range strings.Split(string(data), "\n") {
		name, value, _ := strings.Cut(line, "=")
		switch name {
		case "relp_version":
			version = true
		case "commands":
			syslog = slices.Contains(strings.Split(value, ","), "syslog")
		}
	}
	if !version || !syslog {
		return fmt.Errorf("open offers %q: relp_version and commands=syslog are required", data)
	}
	return nil
}
