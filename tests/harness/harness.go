// Package harness runs the built daemon against the test Teleport server and
// the Fluentd-compatible receiver, for the end-to-end and fault-injection
// suites: credentials, seeded history, a process runner, probes of
// /metrics, and tallies of what arrived.
package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/syncbuf"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// Binary returns the daemon under test: $TEH_BINARY (make sets it) or a
// fresh build with the given build tags in a temporary directory.
func Binary(tags ...string) (string, error) {
	if b := os.Getenv("TEH_BINARY"); b != "" {
		return b, nil
	}
	dir, err := os.MkdirTemp("", "teh-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "teleport-event-handler")
	_, file, _, _ := runtime.Caller(0)
	// grpcnotrace as make build and the Dockerfile do (issue 27).
	args := []string{"build", "-o", bin, "-tags", strings.Join(append(tags, "grpcnotrace"), ",")}
	cmd := exec.Command("go", append(args, "./cmd/teleport-event-handler")...)
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the binary: %w", err)
	}
	return bin, nil
}

// Env is one test's Teleport server, receiver and credentials.
type Env struct {
	T        *testing.T
	Binary   string
	PKI      *testpki.Bundle
	Teleport *teleportsrv.Server
	Fluentd  *fluentdsrv.Receiver
	Storage  string
	// T0 is where the seeded history starts, an hour before the test.
	T0 time.Time
	// Recordings are the seeded recordings by session ID.
	Recordings map[string][]apievents.AuditEvent
	// TeleportAddr and FluentdURL are where the daemon is pointed; tests
	// put fault proxies there.
	TeleportAddr, FluentdURL string
}

// NewEnv starts a test Teleport server and a receiver, closed with the test.
func NewEnv(t *testing.T, binary string) *Env {
	t.Helper()
	pki, err := testpki.Generate(t.TempDir())
	require.NoError(t, err)
	tp, err := teleportsrv.Start(teleportsrv.Config{TLS: pki.ServerTLS(pki.TeleportServer, pki.TeleportCA)})
	require.NoError(t, err)
	t.Cleanup(tp.Close)
	fd, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)})
	require.NoError(t, err)
	t.Cleanup(fd.Close)
	return &Env{T: t, Binary: binary, PKI: pki, Teleport: tp, Fluentd: fd, Storage: filepath.Join(t.TempDir(), "storage"),
		T0: time.Now().Add(-time.Hour).Truncate(time.Second), Recordings: map[string][]apievents.AuditEvent{},
		TeleportAddr: tp.Addr(), FluentdURL: fd.URL()}
}

// Seed adds n audit events of the past, one a second from T0, and the
// recording of each session.upload among them. Seed history once per test:
// events added later behind the daemon's position are, as in Teleport, not
// looked for again.
func (e *Env) Seed(n int, seed int64) []apievents.AuditEvent {
	e.T.Helper()
	evs := teleportsrv.GenerateAuditEvents(n, e.T0, time.Second, seed)
	require.NoError(e.T, e.Teleport.AddEvents(evs...))
	for _, ev := range evs {
		if up, ok := ev.(*apievents.SessionUpload); ok {
			sid := up.SessionID
			rec := teleportsrv.GenerateRecording(sid, 4+int(ev.GetTime().Unix()%12), ev.GetTime().Add(-time.Minute))
			require.NoError(e.T, e.Teleport.AddRecording(sid, rec...))
			e.Recordings[sid] = rec
		}
	}
	return evs
}

// AddSession adds a recording of n events, whose ID is SID(name), and the
// session.upload event that announces it, at.
func (e *Env) AddSession(name string, n int, at time.Time) {
	e.T.Helper()
	sid := SID(name)
	rec := teleportsrv.GenerateRecording(sid, n, at.Add(-time.Minute))
	require.NoError(e.T, e.Teleport.AddRecording(sid, rec...))
	e.Recordings[sid] = rec
	up := &apievents.SessionUpload{
		Metadata:        apievents.Metadata{ID: "upload-" + sid, Type: "session.upload", Code: "T2005I", Time: at, ClusterName: teleportsrv.DefaultClusterName},
		SessionMetadata: apievents.SessionMetadata{SessionID: sid},
	}
	require.NoError(e.T, e.Teleport.AddEvents(up))
}

// Audit is the number of audit events received.
func (e *Env) Audit() int { return e.Fluentd.CountTag("test.log") }

// SessionTag is the tag of the events of the recording called sid, or whose
// ID is sid.
func SessionTag(sid string) string { return "session." + SID(sid) + ".log" }

// SID is the session ID, a UUID as Teleport's are, of the recording a test
// calls name (name itself when it is a UUID already).
func SID(name string) string {
	if _, err := uuid.Parse(name); err == nil && len(name) == 36 {
		return name
	}
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(name)).String()
}

// Args is a working command line; extra flags come last and win.
func (e *Env) Args(extra ...string) []string {
	a := []string{"start",
		"--teleport-addr", e.TeleportAddr,
		"--teleport-ca", e.PKI.TeleportCAFile, "--teleport-cert", e.PKI.TeleportCertFile, "--teleport-key", e.PKI.TeleportKeyFile,
		"--fluentd-url", e.FluentdURL + "/test.log", "--fluentd-session-url", e.FluentdURL + "/session",
		"--fluentd-ca", e.PKI.FluentdCAFile, "--fluentd-cert", e.PKI.FluentdClientCertFile, "--fluentd-key", e.PKI.FluentdClientKeyFile,
		"--storage", e.Storage,
		"--start-time", e.T0.Add(-time.Minute).Format(time.RFC3339),
		"--timeout", "200ms",
	}
	return append(a, extra...)
}

// WithIdentity swaps the cert/key/CA flags of args for an identity file.
func WithIdentity(args []string, identity string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--teleport-ca", "--teleport-cert", "--teleport-key":
			i++
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "--teleport-identity", identity)
}

// Run starts the daemon; it is killed when the test ends.
func (e *Env) Run(env []string, args ...string) *Proc {
	return Run(e.T, e.Binary, env, args...)
}

// Proc is a running daemon.
type Proc struct {
	cmd  *exec.Cmd
	out  syncbuf.Buffer
	done chan struct{}
}

func (p *Proc) Write(b []byte) (int, error) { return p.out.Write(b) }

// Output returns what the daemon logged so far.
func (p *Proc) Output() string { return p.out.String() }

// Run starts binary; it is killed when the test ends.
func Run(t *testing.T, binary string, env []string, args ...string) *Proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proc{done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, binary, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("daemon output:\n%s", Tail(p.Output(), 60))
		}
	})
	return p
}

// Wait returns the exit code, failing the test after timeout.
func (p *Proc) Wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("daemon still running after %s; output:\n%s", timeout, Tail(p.Output(), 40))
	}
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Exited reports whether the daemon has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status once the daemon has exited (-1 when a
// signal ended it, or while it runs).
func (p *Proc) ExitCode() int {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// State describes how the daemon exited ("exit status 1", "signal:
// killed"), or "running".
func (p *Proc) State() string {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return "running"
	}
	return p.cmd.ProcessState.String()
}

// Signal sends sig to the daemon.
func (p *Proc) Signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// WaitFor polls cond until it holds or timeout passes.
func WaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Tail returns the last lines of s.
func Tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Tally is how many of the expected events arrived.
type Tally struct {
	Expected, Delivered, Lost, Duplicated int
	// FirstLost names a lost event, for messages.
	FirstLost string
}

func (t *Tally) add(id string, got int) {
	t.Expected++
	if got == 0 {
		t.Lost++
		if t.FirstLost == "" {
			t.FirstLost = id
		}
		return
	}
	t.Delivered++
	t.Duplicated += got - 1
}

// Plus adds two tallies.
func (t Tally) Plus(o Tally) Tally {
	t.Expected += o.Expected
	t.Delivered += o.Delivered
	t.Lost += o.Lost
	t.Duplicated += o.Duplicated
	if t.FirstLost == "" {
		t.FirstLost = o.FirstLost
	}
	return t
}

// TallyAudit counts the audit events of evs that arrived, except those
// named in except (which must not arrive: an arrival counts as duplicated).
func TallyAudit(fd *fluentdsrv.Receiver, evs []apievents.AuditEvent, except map[string]bool) Tally {
	got := fd.CountByUID()
	var t Tally
	for _, ev := range evs {
		id := ev.GetID()
		if except[id] {
			t.Duplicated += got[id]
			continue
		}
		t.add(id, got[id])
	}
	return t
}

// TallySessions counts the session events of the seeded recordings, but the
// skipped types, that arrived under their session's tag.
func (e *Env) TallySessions(skip map[string]bool) Tally {
	var t Tally
	for sid, rec := range e.Recordings {
		got := map[int64]int{}
		for _, raw := range e.Fluentd.Records(SessionTag(sid)) {
			var r struct {
				Event string `json:"event"`
				EI    int64  `json:"ei"`
			}
			if json.Unmarshal(raw, &r) != nil || skip[r.Event] {
				t.Duplicated++ // not what was sent: count it against us
				continue
			}
			got[r.EI]++
		}
		for _, ev := range rec {
			if !skip[ev.GetType()] {
				t.add(fmt.Sprintf("%s/%d", sid, ev.GetIndex()), got[ev.GetIndex()])
			}
		}
	}
	return t
}

// Delivered checks that every event reached Fluentd, and returns how many
// extra copies arrived.
func Delivered(t *testing.T, fd *fluentdsrv.Receiver, evs []apievents.AuditEvent, except map[string]bool) (duplicates int) {
	t.Helper()
	got := TallyAudit(fd, evs, except)
	require.Zero(t, got.Lost, "audit events lost, e.g. %s", got.FirstLost)
	return got.Duplicated
}

// SessionsDelivered checks that every session event but the skipped types
// arrived, and returns the extra copies.
func (e *Env) SessionsDelivered(skip map[string]bool) (duplicates int) {
	e.T.Helper()
	got := e.TallySessions(skip)
	require.Zero(e.T, got.Lost, "session events lost, e.g. %s", got.FirstLost)
	return got.Duplicated
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// Scrape returns the samples of /metrics by name and labels, e.g.
// `teleport_event_handler_events_sent_total{stream="audit"}`; nil when
// nothing answers.
func Scrape(addr string) map[string]float64 {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// Probe returns the status code and reason of /healthz or /readyz, or 0
// when nothing answers.
func Probe(addr, path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body.Reason
}
