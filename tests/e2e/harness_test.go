// Package e2e drives the built binary against the test Teleport server and
// the Fluentd-compatible receiver.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// binary is the daemon under test: $TEH_BINARY (make test sets it) or a
// fresh build.
var binary string

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	if code == 0 {
		code = m.Run()
	}
	os.Exit(code)
}

func setup() (int, error) {
	if b := os.Getenv("TEH_BINARY"); b != "" {
		binary = b
		return 0, nil
	}
	dir, err := os.MkdirTemp("", "teh-e2e-bin-")
	if err != nil {
		return 1, err
	}
	binary = filepath.Join(dir, "teleport-event-handler")
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-o", binary, "./cmd/teleport-event-handler")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return 1, fmt.Errorf("build the binary: %w", err)
	}
	return 0, nil
}

// env is one test's Teleport server, receiver and credentials.
type env struct {
	t        *testing.T
	pki      *testpki.Bundle
	teleport *teleportsrv.Server
	fluentd  *fluentdsrv.Receiver
	storage  string
	// t0 is where the seeded history starts, an hour before the test.
	t0 time.Time
	// recordings are the seeded recordings by session ID.
	recordings map[string][]apievents.AuditEvent
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pki, err := testpki.Generate(t.TempDir())
	require.NoError(t, err)
	tp, err := teleportsrv.Start(teleportsrv.Config{TLS: pki.ServerTLS(pki.TeleportServer, pki.TeleportCA)})
	require.NoError(t, err)
	t.Cleanup(tp.Close)
	fd, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)})
	require.NoError(t, err)
	t.Cleanup(fd.Close)
	return &env{t: t, pki: pki, teleport: tp, fluentd: fd, storage: filepath.Join(t.TempDir(), "storage"),
		t0: time.Now().Add(-time.Hour).Truncate(time.Second), recordings: map[string][]apievents.AuditEvent{}}
}

// seed adds n audit events of the past, one a second from t0, and the
// recording of each session.upload among them. Seed history once per test:
// events added later behind the daemon's position are, as in Teleport, not
// looked for again.
func (e *env) seed(n int, seed int64) []apievents.AuditEvent {
	e.t.Helper()
	evs := teleportsrv.GenerateAuditEvents(n, e.t0, time.Second, seed)
	require.NoError(e.t, e.teleport.AddEvents(evs...))
	for _, ev := range evs {
		if up, ok := ev.(*apievents.SessionUpload); ok {
			sid := up.SessionID
			rec := teleportsrv.GenerateRecording(sid, 4+int(ev.GetTime().Unix()%12), ev.GetTime().Add(-time.Minute))
			require.NoError(e.t, e.teleport.AddRecording(sid, rec...))
			e.recordings[sid] = rec
		}
	}
	return evs
}

// audit is the number of audit events received.
func (e *env) audit() int { return e.fluentd.CountTag("test.log") }

// sessionTag is the tag of recording sid's events.
func sessionTag(sid string) string { return "session." + sid + ".log" }

// args is a working command line; extra flags come last and win.
func (e *env) args(extra ...string) []string {
	a := []string{"start",
		"--teleport-addr", e.teleport.Addr(),
		"--teleport-ca", e.pki.TeleportCAFile, "--teleport-cert", e.pki.TeleportCertFile, "--teleport-key", e.pki.TeleportKeyFile,
		"--fluentd-url", e.fluentd.URL() + "/test.log", "--fluentd-session-url", e.fluentd.URL() + "/session",
		"--fluentd-ca", e.pki.FluentdCAFile, "--fluentd-cert", e.pki.FluentdClientCertFile, "--fluentd-key", e.pki.FluentdClientKeyFile,
		"--storage", e.storage,
		"--start-time", e.t0.Add(-time.Minute).Format(time.RFC3339),
		"--timeout", "200ms",
	}
	return append(a, extra...)
}

// proc is a running daemon.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

// Output returns what the daemon logged so far.
func (p *proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// run starts the daemon; it is killed when the test ends.
func run(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{done: make(chan struct{}), cancel: cancel}
	p.cmd = exec.CommandContext(ctx, binary, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	require.NoError(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("daemon output:\n%s", tail(p.Output(), 60))
		}
	})
	return p
}

// wait returns the exit code, failing the test after timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("daemon still running after %s; output:\n%s", timeout, tail(p.Output(), 40))
	}
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// delivered checks that every event reached Fluentd, and returns how many
// extra copies arrived.
func delivered(t *testing.T, fd *fluentdsrv.Receiver, evs []apievents.AuditEvent, except map[string]bool) (duplicates int) {
	t.Helper()
	got := fd.CountByUID()
	for _, ev := range evs {
		id := ev.GetID()
		if except[id] {
			require.Zero(t, got[id], "event %s (%s) should not arrive", id, ev.GetType())
			continue
		}
		require.GreaterOrEqual(t, got[id], 1, "event %s (%s) lost", id, ev.GetType())
		duplicates += got[id] - 1
	}
	return duplicates
}
