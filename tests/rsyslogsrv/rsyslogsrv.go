// Package rsyslogsrv runs a real rsyslogd, started by the test itself, as
// the receiver of the daemon's syslog outputs: RFC 5424 over TLS with
// octet-counting framing (imtcp, gtls driver) and RELP over TLS (imrelp).
// A hand-written receiver would only agree with our own reading of the
// RFCs; rsyslog is what the outputs meet in production. It writes every
// message it receives, as received, to one file per input, which Parse
// reads back strictly. ScriptedRELP (scripted.go) is the RELP peer for
// what rsyslog cannot be made to do on demand: refuse messages.
//
// What rsyslog does to a message on the way to the file (rsyslog 8.2302,
// verified by this package's tests): the line is %rawmsg%, the bytes after
// the framing, so the timestamp's fraction, a UTF-8 BOM, a leading space
// in MSG and the structured data's escapes arrive as sent. Control
// characters (below 0x20) are escaped on receipt as #ooo (a tab is #011,
// a line feed #012; DEL and 8-bit bytes pass), and a trailing line feed is
// dropped: a JSON body, which has no raw control characters, arrives
// byte-exact. A message longer than MaxMessageSize is cut: over imtcp the
// rest, but its first byte, arrives as a message of its own; over RELP it
// is dropped and the frame answered 200 all the same.
package rsyslogsrv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// The inputs, as Messages, Lines and Await name them.
const (
	Syslog = "syslog" // RFC 5424 over TLS, octet counting (imtcp)
	RELP   = "relp"   // RELP over TLS (imrelp)
)

// Options configures Start.
type Options struct {
	// CAFile is the CA that signed the clients' certificates; CertFile and
	// KeyFile are the server's. Both inputs require a client certificate
	// signed by the CA, of any name (authMode x509/certvalid; certvalid
	// with OpenSSL for RELP: librelp's GnuTLS certvalid takes any CA's).
	// PKIOptions fills them from testpki.
	CAFile, CertFile, KeyFile string
	// MaxMessageSize is rsyslog's global maxMessageSize in bytes, for both
	// inputs; 0 keeps rsyslog's default, 8k.
	MaxMessageSize int
	// DiskQueue gives each input's ruleset a disk-assisted queue in the
	// work directory, saved on shutdown. rsyslog answers a RELP frame once
	// the message is in that queue: by rsyslog's documentation, this keeps
	// acknowledged messages over a graceful restart, not over SIGKILL (a
	// disk-assisted queue holds messages in memory until it is full). The
	// tests check that it runs and delivers, not the claim. The default
	// is rsyslog's in-memory queue.
	DiskQueue bool
}

// Server is a running rsyslogd of one test.
type Server struct {
	opts    Options
	bin     string
	dir     string            // the test's temporary directory
	conf    string            // rsyslog.conf
	pidFile string            // rsyslogd's -i
	logFile string            // rsyslogd's stdout and stderr, appended
	out     map[string]string // input -> file of its messages
	ports   map[string]int    // input -> port, fixed after Start

	mu   sync.Mutex
	proc *process // nil while stopped
}

// startAttempts bounds Start's retries when another process took a port
// between the harness choosing it and rsyslog binding it.
const startAttempts = 3

// Start writes a configuration into a temporary directory of t and starts
// rsyslogd with it, listening on two free ports of 127.0.0.1, and returns
// when both accept connections. It stops rsyslogd when the test ends. It
// skips the test when rsyslogd is not installed, unless the environment
// sets TEH_REQUIRE_RSYSLOG (as make test does): then it fails it.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	bin := binary(t)
	if o.CAFile == "" || o.CertFile == "" || o.KeyFile == "" {
		t.Fatal("rsyslogsrv: Options need CAFile, CertFile and KeyFile")
	}
	s, err := launch(bin, t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("rsyslogsrv: rsyslogd's log (%s):%s", s.logFile, s.logTail())
		}
		s.Stop()
	})
	return s
}

// Launch is Start outside a test (the bench): rsyslogd's files go in dir,
// and the caller stops it.
func Launch(dir string, o Options) (*Server, error) {
	bin, err := lookPath()
	if err != nil {
		return nil, err
	}
	// rsyslogd changes to / as it starts: its files need absolute paths.
	for _, p := range []*string{&dir, &o.CAFile, &o.CertFile, &o.KeyFile} {
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, err
		}
	}
	return launch(bin, dir, o)
}

func launch(bin, dir string, o Options) (*Server, error) {
	s := &Server{
		opts:    o,
		bin:     bin,
		dir:     dir,
		conf:    filepath.Join(dir, "rsyslog.conf"),
		pidFile: filepath.Join(dir, "rsyslogd.pid"),
		logFile: filepath.Join(dir, "rsyslogd.log"),
		out: map[string]string{
			Syslog: filepath.Join(dir, "syslog.log"),
			RELP:   filepath.Join(dir, "relp.log"),
		},
	}
	err := os.Mkdir(s.workDir(), 0o700)
	for attempt := 0; err == nil; attempt++ {
		if s.ports, err = freePorts(Syslog, RELP); err != nil {
			break
		}
		if err = s.writeConfig(); err != nil {
			break
		}
		if attempt == 0 {
			if err = s.checkConfig(); err != nil {
				break
			}
		}
		err = s.start()
		if !errors.Is(err, errPortTaken) || attempt+1 == startAttempts {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("rsyslogsrv: start rsyslogd: %w%s", err, s.logTail())
	}
	return s, nil
}

// freePorts picks a free port of 127.0.0.1 for each name: the kernel
// chooses it for a listener that is closed at once, for rsyslog to bind.
func freePorts(names ...string) (map[string]int, error) {
	ports := map[string]int{}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, name := range names {
		// All open at once, so that the names get different ports.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports[name] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func (s *Server) workDir() string { return filepath.Join(s.dir, "work") }

// SyslogAddr is the host:port of the syslog-over-TLS input.
func (s *Server) SyslogAddr() string { return s.addr(Syslog) }

// RELPAddr is the host:port of the RELP input.
func (s *Server) RELPAddr() string { return s.addr(RELP) }

// SyslogURL is the daemon's URL of the syslog-over-TLS input.
func (s *Server) SyslogURL() string { return "syslog+tls://" + s.SyslogAddr() }

// RELPURL is the daemon's URL of the RELP input.
func (s *Server) RELPURL() string { return "relp+tls://" + s.RELPAddr() }

func (s *Server) addr(input string) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ports[input]))
}

// Dir is the server's directory: its configuration, log, output files and
// work directory (queues).
func (s *Server) Dir() string { return s.dir }

// Pid is rsyslogd's process id, 0 while it is stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Log is what rsyslogd wrote to its stdout and stderr since Start, over
// restarts: its own errors, such as "peer did not provide a certificate".
func (s *Server) Log() (string, error) {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return "", fmt.Errorf("rsyslogsrv: read the log: %w", err)
	}
	return string(b), nil
}

// Restart stops rsyslogd gracefully (SIGTERM: it sends RELP sessions
// serverclose, saves a disk-assisted queue) and starts it again on the
// same ports, appending to the same files. After Kill or Stop it starts
// it again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		t.Fatalf("rsyslogsrv: restart: %v%s", err, s.logTail())
	}
	if err := s.startLocked(); err != nil {
		t.Fatalf("rsyslogsrv: restart: %v%s", err, s.logTail())
	}
}

// Kill ends rsyslogd with SIGKILL, as a crash: what is in its memory is
// lost, RELP sessions end without serverclose. Restart starts it again.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	err := s.proc.kill()
	s.proc = nil
	if err != nil {
		t.Fatalf("rsyslogsrv: kill: %v", err)
	}
}

// Stop stops rsyslogd gracefully, or kills it when it does not stop in
// time. The test's cleanup calls it; it may be called again.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.stopLocked() // the process is gone either way
}

func (s *Server) stopLocked() error {
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop()
	s.proc = nil
	return err
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}
