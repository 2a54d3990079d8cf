package rsyslogsrv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The bounds of every wait on rsyslogd.
const (
	// readyTimeout is how long rsyslogd has to listen on both ports (it
	// takes about 100 ms on an idle machine, seconds on a busy one).
	readyTimeout = 20 * time.Second
	// termTimeout is how long it has to exit after SIGTERM before it is
	// killed, and killTimeout after SIGKILL.
	termTimeout = 15 * time.Second
	killTimeout = 5 * time.Second
	// checkTimeout bounds rsyslogd -N1, the configuration check.
	checkTimeout = 20 * time.Second
	pollInterval = 20 * time.Millisecond
)

// errPortTaken is another process listening on a port rsyslogd was to
// bind: it would run without that input.
var errPortTaken = errors.New("a port is taken by another process")

// requireEnv, when set, turns a missing rsyslogd into a failure: CI
// installs it, and a skipped end-to-end test there would hide a gap.
const requireEnv = "TEH_REQUIRE_RSYSLOG"

// binary is rsyslogd's path; it skips or fails t when there is none.
func binary(t testing.TB) string {
	t.Helper()
	if path, err := lookPath(); err == nil {
		return path
	}
	if os.Getenv(requireEnv) != "" {
		t.Fatalf("rsyslogsrv: rsyslogd is not installed and %s is set (make test-tools installs it)", requireEnv)
	}
	t.Skipf("rsyslogsrv: rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls rsyslog-relp; %s=1 makes this a failure)", requireEnv)
	return ""
}

// lookPath finds rsyslogd: /usr/sbin is not on every user's PATH.
func lookPath() (string, error) {
	for _, p := range []string{"rsyslogd", "/usr/sbin/rsyslogd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("rsyslogsrv: rsyslogd is not installed (apt-get install rsyslog rsyslog-gnutls rsyslog-relp)")
}

// checkConfig runs rsyslogd -N1: rsyslogd itself runs on past most errors
// in its configuration, logging them, with an input or action missing.
func (s *Server) checkConfig() error {
	cmd := exec.Command(s.bin, "-N1", "-f", s.conf)
	out, err := runWithin(cmd, checkTimeout)
	if err != nil {
		return fmt.Errorf("rsyslogd -N1 -f %s: %w\n%s", s.conf, err, out)
	}
	return nil
}

func runWithin(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return []byte(out.String()), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done // Wait returns once the process is killed
		return []byte(out.String()), fmt.Errorf("no answer within %v", d)
	}
}

// process is one run of rsyslogd.
type process struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when cmd.Wait returned, with err
	err  error
}

// startLocked starts rsyslogd and waits until it listens on both ports.
func (s *Server) startLocked() error {
	if s.proc != nil {
		return errors.New("rsyslogd is running already")
	}
	// A pid file left by a killed rsyslogd names a process that may exist
	// by now: rsyslogd would refuse to start.
	if err := os.Remove(s.pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the old pid file: %w", err)
	}
	logf, err := os.OpenFile(s.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open the log: %w", err)
	}
	cmd := exec.Command(s.bin, "-n", "-f", s.conf, "-i", s.pidFile)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// rsyslogd dies with the test binary, even a killed one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if err := s.waitListening(p); err != nil {
		p.kill()
		return err
	}
	s.proc = p
	return nil
}

// waitListening returns once rsyslogd listens on both ports. It looks in
// /proc instead of connecting: rsyslog logs every probe that connects
// without a TLS handshake as an error, in the log the tests read.
func (s *Server) waitListening(p *process) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ready := true
		for input, port := range s.ports {
			mine, other, err := listening(p.cmd.Process.Pid, port)
			if err != nil {
				return err
			}
			if other {
				return fmt.Errorf("%w: %s port %d", errPortTaken, input, port)
			}
			ready = ready && mine
		}
		if ready {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("rsyslogd exited before listening: %v", p.err)
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rsyslogd did not listen on ports %v within %v", s.ports, readyTimeout)
		}
	}
}

// listening tells whether process pid listens on TCP port (any IPv4
// address), and whether another process does.
func listening(pid, port int) (mine, other bool, err error) {
	inodes, err := listeners(port)
	if err != nil || len(inodes) == 0 {
		return false, false, err
	}
	fds, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return false, false, nil // exited: the caller sees it
	}
	own := map[string]bool{}
	for _, fd := range fds {
		link, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); ok {
			own[strings.TrimSuffix(inode, "]")] = true
		}
	}
	for _, inode := range inodes {
		if own[inode] {
			mine = true
		} else {
			other = true
		}
	}
	return mine, other, nil
}

// listeners are the inodes of the sockets in state LISTEN on TCP port,
// IPv4 and IPv6: a listener on [::] keeps rsyslogd from binding
// 127.0.0.1 too.
func listeners(port int) ([]string, error) {
	var inodes []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		found, err := listenersIn(table, port)
		if err != nil {
			return nil, err
		}
		inodes = append(inodes, found...)
	}
	return inodes, nil
}

func listenersIn(table string, port int) ([]string, error) {
	f, err := os.Open(table)
	if errors.Is(err, os.ErrNotExist) && strings.HasSuffix(table, "6") {
		return nil, nil // no IPv6
	}
	if err != nil {
		return nil, fmt.Errorf("list listening sockets: %w", err)
	}
	defer f.Close()
	suffix := fmt.Sprintf(":%04X", port)
	var inodes []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" || !strings.HasSuffix(fields[1], suffix) {
			continue
		}
		inodes = append(inodes, fields[9])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	return inodes, nil
}

// stop sends SIGTERM and waits for the exit; it kills the process when it
// does not exit in time.
func (p *process) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(termTimeout):
	}
	if err := p.kill(); err != nil {
		return err
	}
	return fmt.Errorf("rsyslogd did not exit within %v of SIGTERM: killed", termTimeout)
}

func (p *process) kill() error {
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("rsyslogd (pid %d) did not exit within %v of SIGKILL", p.cmd.Process.Pid, killTimeout)
	}
}

// tailBytes is how much of rsyslogd's log a failure shows.
const tailBytes = 4 << 10

// logTail is the end of rsyslogd's log, for error messages: it starts
// with a line feed, or is empty when there is no log.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	return "\n--- rsyslogd's log (end) ---\n" + strings.TrimRight(string(b), "\n")
}
