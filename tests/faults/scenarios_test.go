package faults

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/rsyslogsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// Bounds on what a crash may resend, from the defaults: the audit window
// (daemon.MinWindow) and each of 5 players' window (sessions.DefaultWindow).
const (
	auditWindow   = 256
	sessionWindow = 5 * 32
)

// seedAll seeds audit history with recordings and a few long recordings.
func (s *scenario) seedAll(audit, long, longLen int) []apievents.AuditEvent {
	evs := s.e.Seed(audit, int64(s.rng.Uint64()>>1))
	for i := range long {
		s.e.AddSession(fmt.Sprintf("long-%d", i), longLen, s.e.T0.Add(time.Duration(10+i)*time.Second))
	}
	return evs
}

func (s *scenario) tally(evs []apievents.AuditEvent, except map[string]bool, skip map[string]bool) harness.Tally {
	return harness.TallyAudit(s.e.Fluentd, evs, except).Plus(s.e.TallySessions(skip))
}

// finish runs the daemon to the end of the history and returns its output.
// killNine starts the daemon n times and kills it with SIGKILL 0.3 to 1.2 s
// into each run; it returns n.
func (s *scenario) killNine(n int) int {
	for kill := 1; kill <= n; kill++ {
		p := s.e.Run(nil, s.e.Args("--skip-session-types", "")...)
		time.Sleep(time.Duration(300+s.rng.IntN(900)) * time.Millisecond)
		p.Signal(syscall.SIGKILL)
		p.Wait(s.t, 10*time.Second)
		s.t.Logf("kill %d: %d records received", kill, s.e.Fluentd.Count())
	}
	return n
}

func (s *scenario) finish(extra ...string) string {
	p := s.e.Run(nil, s.e.Args(append([]string{"--exit-on-last-event"}, extra...)...)...)
	require.Equal(s.t, 0, p.Wait(s.t, 5*time.Minute))
	return p.Output()
}

func TestKillNine(t *testing.T) {
	s := newScenario(t, "kill -9")
	evs := s.seedAll(1500, 3, 1500)
	s.e.Fluentd.SetLatency(time.Millisecond) // stretch the run so kills land mid-stream
	kills := s.killNine(20)
	s.fault("%d x kill -9 at random moments", kills)
	s.e.Fluentd.SetLatency(0)
	s.finish("--skip-session-types", "")
	s.check(s.tally(evs, nil, nil), kills*(auditWindow+sessionWindow))
}

func TestActorPanics(t *testing.T) {
	s := newScenario(t, "actor panics")
	evs := s.seedAll(1200, 2, 800)
	now := time.Now()
	for i := range 4 {
		require.NoError(t, s.e.Teleport.AddEvents(&apievents.UserLogin{
			Metadata:     apievents.Metadata{ID: fmt.Sprintf("fail-%d", i), Type: "user.login", Code: "T1000W", Time: now.Add(time.Duration(i-30) * time.Second)},
			UserMetadata: apievents.UserMetadata{User: "mallory"}, Status: apievents.Status{Success: false},
		}))
	}
	armed := map[string]int{"poller": 4, "pool": 2, "connection": 6, "player": 20, "sessions": 3, "checkpoint": 4, "lockpolicy": 2}
	var spec []string
	total := 0
	for k, n := range armed {
		spec = append(spec, fmt.Sprintf("%s=%d", k, n))
		total += n
	}
	s.fault("panics: %s", strings.Join(spec, ","))
	addr := harness.FreeAddr(t)
	p := s.e.Run([]string{"TEH_FAULTS=" + strings.Join(spec, ",")}, s.e.Args("--metrics-addr", addr, "--lock-enabled")...)
	expectSession := 0
	for _, rec := range s.e.Recordings {
		for _, ev := range rec {
			if !defaultSkip[ev.GetType()] {
				expectSession++
			}
		}
	}
	var m map[string]float64
	harness.WaitFor(t, 3*time.Minute, "everything delivered", func() bool {
		m = harness.Scrape(addr)
		return s.tally(evs, nil, defaultSkip).Lost == 0 && len(s.e.Teleport.Locks()) == 1 && m != nil
	})
	time.Sleep(2 * time.Second) // let players that restarted finish and go
	m = harness.Scrape(addr)
	s.row.Restarts = restarts(m)
	goroutines, players, rss := m["go_goroutines"], m[`teleport_event_handler_actors{kind="player"}`], m["process_resident_memory_bytes"]
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second))

	// The same history without faults, for the goroutine baseline.
	base := newScenario(t, "actor panics (baseline)")
	baseEvs := base.seedAll(1200, 2, 800)
	baddr := harness.FreeAddr(t)
	bp := base.e.Run(nil, base.e.Args("--metrics-addr", baddr)...)
	harness.WaitFor(t, 3*time.Minute, "baseline delivered", func() bool { return base.tally(baseEvs, nil, defaultSkip).Lost == 0 })
	time.Sleep(2 * time.Second)
	bm := harness.Scrape(baddr)
	bp.Signal(syscall.SIGTERM)
	bp.Wait(t, 30*time.Second)

	require.GreaterOrEqual(t, s.row.Restarts, total-2, "each injected panic restarts an actor (a few may land after the work is done)")
	require.Zero(t, players, "players are gone once their recordings are done")
	require.LessOrEqual(t, goroutines, bm["go_goroutines"]+10, "goroutines leaked across %d restarts", s.row.Restarts)
	require.LessOrEqual(t, rss, 1.5*bm["process_resident_memory_bytes"]+32<<20, "memory grew across %d restarts", s.row.Restarts)
	s.check(s.tally(evs, nil, defaultSkip), s.row.Restarts*(auditWindow+sessionWindow))
	base.check(base.tally(baseEvs, nil, defaultSkip), 0)
	base.fault("none (goroutines %.0f vs %.0f with faults; RSS %.0f MB vs %.0f MB)", bm["go_goroutines"], goroutines,
		bm["process_resident_memory_bytes"]/(1<<20), rss/(1<<20))
}

func TestFluentdNetwork(t *testing.T) {
	s := newScenario(t, "fluentd network")
	evs := s.seedAll(1500, 2, 1000)
	px := harness.NewProxy(t, "fluentd", strings.TrimPrefix(s.e.Fluentd.URL(), "https://"))
	s.e.FluentdURL = "https://" + px.Addr()
	rejected := map[string]bool{}
	for i := 0; i < len(evs); i += 150 {
		rejected[evs[i].GetID()] = true
	}
	s.e.Fluentd.RejectWhere(400, func(r map[string]any) bool { id, _ := r["uid"].(string); return rejected[id] })
	s.e.Fluentd.SetRandomFailure(0.05, 503, int64(s.rng.Uint64()>>1))
	px.Toxic(t, "latency", "latency", "downstream", map[string]any{"latency": 30, "jitter": 10})
	px.Toxic(t, "bandwidth", "bandwidth", "upstream", map[string]any{"rate": 256})
	s.fault("%d events rejected with 400; 5%% random 503; 30±10 ms latency; 256 KB/s", len(rejected))

	p := s.e.Run(nil, s.e.Args()...)
	time.Sleep(3 * time.Second)
	s.resetsThenTimeouts(px)
	s.e.Fluentd.Down(time.Minute)
	s.fault("receiver down for 60 s")
	time.Sleep(61 * time.Second)
	require.NoError(t, s.e.Fluentd.Err())
	harness.WaitFor(t, 3*time.Minute, "everything delivered", func() bool { return s.tally(evs, rejected, defaultSkip).Lost == 0 })
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second))

	raw, err := os.ReadFile(filepath.Join(persistence.Dir(s.e.Storage, s.e.TeleportAddr), persistence.DeadLetterFile))
	require.NoError(t, err)
	require.Equal(t, len(rejected), strings.Count(string(raw), "\n"), "every rejected event dead-lettered once")
	s.check(s.tally(evs, rejected, defaultSkip), 0)
}

// A receiver that refuses service (403 from a proxy in front of it), then
// rejects every event (an in_http source without <parse>, 400 to all) for a
// minute, loses nothing and dead-letters nothing: the refusal is waited
// out, the breaker opens after a run of rejections and takes its letters
// back, and everything is sent once the receiver accepts events.
func TestFluentdRefuses(t *testing.T) {
	s := newScenario(t, "fluentd refuses")
	evs := s.seedAll(1000, 1, 500)
	addr := harness.FreeAddr(t)
	s.e.Fluentd.FailFirst(1<<30, 403)
	p := s.e.Run(nil, s.e.Args("--metrics-addr", addr)...)
	time.Sleep(15 * time.Second)
	code, reason := harness.Probe(addr, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, reason, "403")
	s.e.Fluentd.FailFirst(1<<30, 400)
	s.fault("every request refused with 403 for 15 s, then every event rejected with 400 for 60 s")
	time.Sleep(60 * time.Second)
	_, reason = harness.Probe(addr, "/readyz")
	require.Contains(t, reason, "<parse>", "the breaker names the likely cause")
	s.e.Fluentd.FailFirst(0, 0)
	harness.WaitFor(t, 3*time.Minute, "everything delivered", func() bool { return s.tally(evs, nil, defaultSkip).Lost == 0 })
	s.row.Restarts = restarts(harness.Scrape(addr))
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second))
	raw, err := os.ReadFile(filepath.Join(persistence.Dir(s.e.Storage, s.e.TeleportAddr), persistence.DeadLetterFile))
	if !os.IsNotExist(err) {
		require.NoError(t, err)
		require.Empty(t, strings.TrimSpace(string(raw)), "dead letters of a receiver that rejected everything")
	}
	s.check(s.tally(evs, nil, defaultSkip), 0)
}

func TestTeleportFaults(t *testing.T) {
	s := newScenario(t, "teleport faults")
	evs := s.seedAll(1500, 3, 2000)
	px := harness.NewProxy(t, "teleport", s.e.Teleport.Addr())
	s.e.TeleportAddr = px.Addr()
	s.e.Teleport.FailNext("GetUnstructuredEvents", 5, codes.Unavailable)
	s.e.Teleport.SetLatency("GetUnstructuredEvents", 300*time.Millisecond)
	// Old uploads get three tries (the recording of an upload an hour old
	// will not come later); this one is found on the third.
	s.e.Teleport.SetRecordingAvailableAfter("long-1", 2)
	s.fault("5 Unavailable; 300 ms pages; a recording found on the 3rd try")

	maddr := harness.FreeAddr(t)
	t.Cleanup(func() {
		if t.Failed() {
			for k, v := range harness.Scrape(maddr) {
				if strings.Contains(k, "in_flight") || strings.Contains(k, "mailbox") || strings.Contains(k, "sessions_") || strings.Contains(k, "actors{") {
					t.Logf("%s %v", k, v)
				}
			}
		}
	})
	args := s.e.Args("--teleport-refresh-enabled", "--teleport-refresh-interval", "500ms", "--metrics-addr", maddr)
	args = harness.WithIdentity(args, s.e.PKI.IdentityFile)
	p := s.e.Run(nil, args...)
	harness.WaitFor(t, time.Minute, "recordings streaming", func() bool { return s.e.Fluentd.CountTag(harness.SessionTag("long-0")) > 100 })
	px.Toxic(t, "reset", "reset_peer", "downstream", map[string]any{"timeout": 50})
	time.Sleep(time.Second)
	px.Remove(t, "reset")
	s.fault("streams and pages dropped for 1 s")
	client, err := s.e.PKI.NewTeleportClient()
	require.NoError(t, err)
	require.NoError(t, testpki.WriteIdentityFile(s.e.PKI.IdentityFile+".new", s.e.PKI.TeleportCA, client))
	require.NoError(t, os.Rename(s.e.PKI.IdentityFile+".new", s.e.PKI.IdentityFile))
	s.fault("identity file replaced")
	s.e.Teleport.SetLatency("GetUnstructuredEvents", 0)
	harness.WaitFor(t, 3*time.Minute, "everything delivered", func() bool { return s.tally(evs, nil, defaultSkip).Lost == 0 })
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second))
	s.check(s.tally(evs, nil, defaultSkip), 0)
}

// mount mounts a tmpfs of size at dir, or skips the test where mounting is
// not allowed (not root, or no CAP_SYS_ADMIN).
func mount(t *testing.T, dir, size string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o700))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); the storage scenario needs root", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput()
	require.NoError(t, err, string(out))
}

func TestStorage(t *testing.T) {
	s := newScenario(t, "storage")
	evs := s.seedAll(2000, 2, 1000)
	mount(t, s.e.Storage, "4m")
	s.e.Fluentd.SetLatency(2 * time.Millisecond)

	// Disk full while running: checkpoints fail, delivery pauses, and it
	// all resumes once space is back.
	p := s.e.Run(nil, s.e.Args()...)
	harness.WaitFor(t, time.Minute, "some progress", func() bool { return s.e.Audit() > 200 })
	filler := filepath.Join(s.e.Storage, "filler")
	_ = exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").Run() // fails with ENOSPC, as meant
	s.fault("disk full for 3 s")
	time.Sleep(3 * time.Second)
	require.NoError(t, os.Remove(filler))
	time.Sleep(2 * time.Second)
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second))
	out := p.Output()
	require.Contains(t, out, "checkpoint write failed", "the full disk was noticed")

	// A read-only state file: a clear error naming it, and nothing lost.
	remount(t, s.e.Storage, "ro")
	s.fault("storage read-only at start")
	ro := s.e.Run(nil, s.e.Args("--exit-on-last-event")...)
	require.NotZero(t, ro.Wait(t, 30*time.Second))
	require.Contains(t, ro.Output(), "state.db")
	remount(t, s.e.Storage, "rw")

	s.e.Fluentd.SetLatency(0)
	s.finish()
	s.check(s.tally(evs, nil, defaultSkip), 2*(auditWindow+sessionWindow))
}

func TestSoak(t *testing.T) {
	s := newScenario(t, "soak")
	evs := s.seedAll(3000, 4, 1500)
	px := harness.NewProxy(t, "fluentd", strings.TrimPrefix(s.e.Fluentd.URL(), "https://"))
	s.e.FluentdURL = "https://" + px.Addr()
	px.Toxic(t, "latency", "latency", "downstream", map[string]any{"latency": 5, "jitter": 5})
	s.e.Fluentd.SetRandomFailure(0.02, 502, int64(s.rng.Uint64()>>1))
	s.fault("5±5 ms latency; 2%% random 502")
	kills, panics := 0, 0
	for range 6 {
		env := []string{"TEH_FAULTS=player=2,connection=2,poller=1"}
		panics += 5
		p := s.e.Run(env, s.e.Args()...)
		time.Sleep(time.Duration(1500+s.rng.IntN(1500)) * time.Millisecond)
		p.Signal(syscall.SIGKILL)
		p.Wait(t, 10*time.Second)
		kills++
	}
	s.fault("%d x kill -9 with up to %d panics armed", kills, panics)
	s.finish()
	s.check(s.tally(evs, nil, defaultSkip), (kills+panics)*(auditWindow+sessionWindow))
}

// Bounds over forward with its default of 100 events a message and 10
// connections: 4 x 10 x 100 audit events, and each of 5 players' window
// of 4 x 1,000 / 5.
const (
	forwardAuditWindow   = 4000
	forwardSessionWindow = 5 * 800
)

// kill -9 at random moments while the daemon sends with the forward
// protocol: every chunk not acked is sent again, nothing is lost.
func TestForwardKillNine(t *testing.T) {
	s := newScenario(t, "forward: kill -9")
	evs := s.seedAll(3000, 3, 1500)
	s.e.FluentdURL = s.e.Fluentd.ForwardURL()
	// Stretch the run so kills land mid-stream.
	s.e.Fluentd.SetForwardFaults(fluentdsrv.ForwardFaults{AckDelay: 150 * time.Millisecond})
	kills := s.killNine(10)
	s.fault("%d x kill -9 at random moments, acks after 150 ms", kills)
	s.e.Fluentd.SetForwardFaults(fluentdsrv.ForwardFaults{})
	s.finish("--skip-session-types", "")
	s.check(s.tally(evs, nil, nil), kills*(forwardAuditWindow+forwardSessionWindow))
}

// The forward path's own faults: acks that never come, connections closed
// in the middle of a message, latency, resets and timeouts on the network.
// Nothing is lost; only the messages whose ack was lost come twice.
func TestForwardNetwork(t *testing.T) {
	s := newScenario(t, "forward: network")
	evs := s.seedAll(1500, 2, 1000)
	px := harness.NewProxy(t, "fluentd-forward", strings.TrimPrefix(s.e.Fluentd.ForwardURL(), "forward://"))
	s.e.FluentdURL = "forward://" + px.Addr()
	s.e.Fluentd.SetForwardFaults(fluentdsrv.ForwardFaults{DropAcks: 5, CloseMidMessage: 5})
	px.Toxic(t, "latency", "latency", "downstream", map[string]any{"latency": 30, "jitter": 10})
	s.fault("5 acks dropped; 5 connections closed mid-message; 30±10 ms latency")
	p := s.e.Run(nil, s.e.Args("--fluentd-batch", "20")...)
	time.Sleep(2 * time.Second)
	s.resetsThenTimeouts(px)
	harness.WaitFor(t, 3*time.Minute, "everything delivered", func() bool { return s.tally(evs, nil, defaultSkip).Lost == 0 })
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second))
	require.NoError(t, s.e.Fluentd.Err())
	// A dropped ack resends its message (up to 20 events); a reset or a
	// timeout may lose the ack of every message in flight (10 connections).
	s.check(s.tally(evs, nil, defaultSkip), 5*20+2*10*20)
}

// resetsThenTimeouts resets the proxy's connections for 2 s, then lets them
// time out for 3 s.
func (s *scenario) resetsThenTimeouts(px *harness.Proxy) {
	px.Toxic(s.t, "reset", "reset_peer", "upstream", map[string]any{"timeout": 100})
	time.Sleep(2 * time.Second)
	px.Remove(s.t, "reset")
	px.Toxic(s.t, "timeout", "timeout", "upstream", map[string]any{"timeout": 2000})
	time.Sleep(3 * time.Second)
	px.Remove(s.t, "timeout")
	s.fault("connection resets for 2 s; timeouts for 3 s")
}

// RELP into a real rsyslogd: kill -9 of the daemon at random moments, and
// graceful restarts of rsyslog (serverclose to every session) between
// them. Whatever rsyslog did not acknowledge is sent again; nothing is
// lost, and each message's header and structured data match its event.
func TestRELPKillNineAndRsyslogRestarts(t *testing.T) {
	s := newScenario(t, "relp: kill -9, rsyslog restarts")
	evs := s.seedAll(3000, 2, 1000)
	srv := rsyslogsrv.Start(t, rsyslogsrv.PKIOptions(s.e.PKI))
	px := harness.NewProxy(t, "relp", srv.RELPAddr())
	px.Toxic(t, "latency", "latency", "downstream", map[string]any{"latency": 20})
	s.e.FluentdURL = "relp+tls://" + px.Addr()
	// Small windows on two connections, answered 20 ms late, stretch the
	// run so faults land mid-stream.
	args := []string{"--skip-session-types", "", "--fluentd-batch", "10", "--fluentd-max-connections", "2"}
	kills, restarts := 0, 0
	for round := range 6 {
		p := s.e.Run(nil, s.e.Args(args...)...)
		time.Sleep(time.Duration(300+s.rng.IntN(900)) * time.Millisecond)
		if round%2 == 1 {
			srv.Restart(t)
			restarts++
			time.Sleep(300 * time.Millisecond)
		}
		p.Signal(syscall.SIGKILL)
		p.Wait(t, 10*time.Second)
		kills++
		lines, _ := srv.Lines(rsyslogsrv.RELP)
		t.Logf("round %d: %d messages at rsyslog", round, len(lines))
	}
	s.fault("%d x kill -9 at random moments, %d graceful rsyslog restarts; answers 20 ms late", kills, restarts)
	s.finish(args...)
	msgs, err := srv.Messages(rsyslogsrv.RELP)
	require.NoError(t, err)
	audit, sessions := s.e.TallySyslog(msgs, evs, nil)
	s.check(audit.Plus(sessions), (kills+restarts)*(auditWindow+sessionWindow))
}
