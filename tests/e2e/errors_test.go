package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"

	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// badInput runs the daemon and expects it to exit non-zero within a second
// with one message containing every want, having written nothing to storage.
func badInput(t *testing.T, e *env, env []string, args []string, want ...string) {
	t.Helper()
	start := time.Now()
	p := harness.Run(t, binary, env, args...)
	code := p.Wait(t, 5*time.Second)
	took := time.Since(start)
	out := p.Output()
	require.NotZero(t, code, "exit code; output:\n%s", out)
	require.Less(t, took, 2*time.Second, "took %s", took) // 1s plus process start on a loaded machine
	for _, w := range want {
		require.Contains(t, out, w)
	}
	require.Equal(t, 1, strings.Count(strings.TrimSpace(out), "\n")+1, "one message, got:\n%s", out)
	_, err := os.Stat(e.Storage)
	require.True(t, os.IsNotExist(err), "storage directory was created")
}

func without(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func TestBadInputsExitAtOnceWithAClearError(t *testing.T) {
	e := parallelEnv(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate"), 0o600))
	writeFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	cases := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"missing storage", nil, without(e.Args(), "--storage"), []string{"--storage"}},
		{"missing fluentd url", nil, without(e.Args(), "--fluentd-url"), []string{"--fluentd-url"}},
		{"identity and cert both", nil, e.Args("--teleport-identity", e.PKI.IdentityFile), []string{"--teleport-identity"}},
		{"no teleport credentials", nil, without(without(without(e.Args(), "--teleport-ca"), "--teleport-cert"), "--teleport-key"), []string{"--teleport-identity"}},
		{"unreadable cert", nil, e.Args("--fluentd-cert", filepath.Join(dir, "missing.crt")), []string{"--fluentd-cert", "missing.crt"}},
		{"unparsable ca", nil, e.Args("--fluentd-ca", garbage), []string{"--fluentd-ca", "garbage.pem"}},
		{"unparsable teleport key", nil, e.Args("--teleport-key", garbage), []string{"--teleport-key"}},
		{"http url", nil, e.Args("--fluentd-url", "http://127.0.0.1:1/test.log"), []string{"--fluentd-url", "http://127.0.0.1:1/test.log", "https"}},
		{"bad duration", nil, e.Args("--timeout", "5x"), []string{"--timeout", "5x"}},
		{"bad duration from env", []string{"FDFWD_WINDOW_SIZE=forever"}, e.Args(), []string{"window-size", "forever", "FDFWD_WINDOW_SIZE"}},
		{"bad start time", nil, e.Args("--start-time", "yesterday"), []string{"--start-time", "yesterday", "RFC"}},
		{"malformed toml", nil, append([]string{"-c", writeFile("bad.toml", "storage = \"x\"\nbatch = = 3\n")}, e.Args()...), []string{"bad.toml", "line 2"}},
		{"unknown toml key", nil, append([]string{"-c", writeFile("unknown.toml", "storage = \"x\"\nbach = 3\n")}, e.Args()...), []string{"bach"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { badInput(t, e, c.env, c.args, c.want...) })
	}
}

func TestFluentdCertificateThatDoesNotVerifyIsFatal(t *testing.T) {
	e := parallelEnv(t)
	otherCA, err := testpki.OtherCA(t.TempDir())
	require.NoError(t, err)
	p := harness.Run(t, binary, nil, e.Args("--fluentd-ca", otherCA)...)
	require.NotZero(t, p.Wait(t, 20*time.Second))
	require.Contains(t, p.Output(), e.Fluentd.URL())
	require.Contains(t, p.Output(), "--fluentd-ca")

	// Host name not in the certificate: a receiver whose certificate is
	// issued by the right CA but for another name only.
	elsewhere, err := certs.IssueServer(e.PKI.FluentdCA, "fluentd.elsewhere", []string{"fluentd.elsewhere"}, nil, certs.Options{})
	require.NoError(t, err)
	misnamed, err := fluentdsrv.Start(fluentdsrv.Config{TLS: e.PKI.ServerTLS(elsewhere, e.PKI.FluentdCA)})
	require.NoError(t, err)
	defer misnamed.Close()
	p = harness.Run(t, binary, nil, e.Args("--fluentd-url", misnamed.URL()+"/test.log", "--fluentd-session-url", misnamed.URL()+"/session")...)
	require.NotZero(t, p.Wait(t, 20*time.Second))
	require.Contains(t, p.Output(), misnamed.URL())
	require.Contains(t, p.Output(), "certificate")
	requireNothingStored(t, e)
}

func TestFluentdRefusingTheClientCertificateIsFatal(t *testing.T) {
	e := parallelEnv(t)
	// A receiver that trusts only clients of another CA.
	other := testpki.New(t)
	strict, err := fluentdsrv.Start(fluentdsrv.Config{TLS: e.PKI.ServerTLS(e.PKI.FluentdServer, other.FluentdCA)})
	require.NoError(t, err)
	defer strict.Close()
	p := harness.Run(t, binary, nil, e.Args("--fluentd-url", strict.URL()+"/test.log", "--fluentd-session-url", strict.URL()+"/session")...)
	require.NotZero(t, p.Wait(t, 20*time.Second))
	require.Contains(t, p.Output(), strict.URL())
	require.Contains(t, p.Output(), "client certificate")
}

func TestUnreachableFluentdIsWaitedFor(t *testing.T) {
	e, evs := seededEnv(t, 50, 11)
	e.Fluentd.Down(time.Hour)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	harness.WaitFor(t, 20*time.Second, "an error naming the URL", func() bool {
		out := p.Output()
		return strings.Contains(out, "unreachable") && strings.Contains(out, e.Fluentd.URL())
	})
	e.Fluentd.Up()
	require.Equal(t, 0, p.Wait(t, time.Minute))
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, nil))
}

func TestTeleportConnectionErrorsSayWhatFailed(t *testing.T) {
	e := parallelEnv(t)
	// Unreachable: a port nobody listens on. Waited for, saying so, alive
	// and not ready meanwhile; a stop meanwhile is clean.
	health := harness.FreeAddr(t)
	p := harness.Run(t, binary, nil, e.Args("--teleport-addr", "127.0.0.1:1", "--health-addr", health)...)
	harness.WaitFor(t, 30*time.Second, "the waiting line", func() bool {
		out := p.Output()
		return strings.Contains(out, "teleport is unreachable; waiting for it") && strings.Contains(out, "127.0.0.1:1")
	})
	code, reason := harness.Probe(health, "/healthz")
	require.Equal(t, http.StatusOK, code, reason)
	code, reason = harness.Probe(health, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "starting: waiting for Teleport at 127.0.0.1:1", reason)
	// One short line: the fix, and the root cause alone, not the client's
	// nested text of every attempt.
	line := lineWith(t, p.Output(), "teleport is unreachable; waiting for it")
	require.Contains(t, line, `"error":"connection refused"`)
	require.Contains(t, line, `"fix":"check --teleport-addr`)
	require.NotContains(t, line, `\n`)
	require.Less(t, len(line), 400, line)
	p.Signal(15)
	require.Equal(t, 0, p.Wait(t, 30*time.Second))

	// Expired identity.
	expired := filepath.Join(t.TempDir(), "expired-identity")
	require.NoError(t, e.PKI.ExpiredIdentity(expired))
	args := without(without(without(e.Args(), "--teleport-ca"), "--teleport-cert"), "--teleport-key")
	p = harness.Run(t, binary, nil, append(args, "--teleport-identity", expired)...)
	require.NotZero(t, p.Wait(t, 30*time.Second))
	require.Contains(t, p.Output(), "expired")

	// Wrong CA: the client does not trust the server.
	otherCA, err := testpki.OtherCA(t.TempDir())
	require.NoError(t, err)
	p = harness.Run(t, binary, nil, e.Args("--teleport-ca", otherCA)...)
	require.NotZero(t, p.Wait(t, 30*time.Second))
	require.Contains(t, p.Output(), "tls")
	line = lineWith(t, p.Output(), "stopped with an error")
	require.Regexp(t, `"error":"teleport at [^"]+: tls: check that --teleport-ca [^"]+; cause: x509: [^"]+"`, line)
	require.NotContains(t, line, `\n`)
	require.Less(t, len(line), 500, line)
	requireNothingStored(t, e)
}

// lineWith is the first line of out that contains s.
func lineWith(t *testing.T, out, s string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	t.Fatalf("no line with %q in:\n%s", s, out)
	return ""
}

func TestChangedStartTimeIsRefused(t *testing.T) {
	e := parallelEnv(t)
	e.Seed(10, 12)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, time.Minute))
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--start-time", "2020-01-01T00:00:00Z")...)
	require.NotZero(t, p.Wait(t, 20*time.Second))
	require.Contains(t, p.Output(), "2020-01-01T00:00:00Z")
	require.Contains(t, p.Output(), "remove")
}

func TestIdentityFileWithRefreshWorks(t *testing.T) {
	e, evs := seededEnv(t, 100, 13)
	args := without(without(without(e.Args(), "--teleport-ca"), "--teleport-cert"), "--teleport-key")
	p := harness.Run(t, binary, nil, append(args, "--teleport-identity", e.PKI.IdentityFile,
		"--teleport-refresh-enabled", "--teleport-refresh-interval", "300ms", "--debug")...)
	harness.WaitFor(t, 30*time.Second, "the first events", func() bool { return e.Audit() >= 100 })
	// Replace the identity with a freshly issued one while running.
	client, err := e.PKI.NewTeleportClient()
	require.NoError(t, err)
	require.NoError(t, testpki.WriteIdentityFile(e.PKI.IdentityFile+".new", e.PKI.TeleportCA, client))
	require.NoError(t, os.Rename(e.PKI.IdentityFile+".new", e.PKI.IdentityFile))
	harness.WaitFor(t, 10*time.Second, "a reload", func() bool { return strings.Contains(p.Output(), "identity reloaded") })
	more := teleportGenerate(100, time.Now(), 14)
	require.NoError(t, e.Teleport.AddEvents(more...))
	harness.WaitFor(t, 30*time.Second, "events after the reload", func() bool { return e.Audit() >= 200 })
	p.Signal(15)
	require.Equal(t, 0, p.Wait(t, 15*time.Second))
	require.Zero(t, harness.Delivered(t, e.Fluentd, append(evs, more...), nil))
}

func TestCorruptStateIsReportedNotReplaced(t *testing.T) {
	e := parallelEnv(t)
	e.Seed(10, 15)
	dir := persistence.Dir(e.Storage, e.Teleport.Addr())
	require.NoError(t, os.MkdirAll(dir, 0o700))
	state := filepath.Join(dir, "state.db")
	garbage := []byte(strings.Repeat("not a bbolt file ", 512))
	require.NoError(t, os.WriteFile(state, garbage, 0o600))
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.NotZero(t, p.Wait(t, 20*time.Second))
	require.Contains(t, p.Output(), state)
	require.Zero(t, e.Fluentd.Count(), "nothing is sent from scratch")
	after, err := os.ReadFile(state)
	require.NoError(t, err)
	require.Equal(t, garbage, after, "the corrupt file was changed")
}

// A record that does not decode is corruption: reported with the state
// file's path and a clean exit, not restarted into the same failure for
// minutes.
func TestUndecodableRecordIsReportedOnce(t *testing.T) {
	e := parallelEnv(t)
	e.Seed(10, 16)
	dir := persistence.Dir(e.Storage, e.Teleport.Addr())
	sid := harness.SID("broken")
	storetest.Seed(t, dir,
		kv.Write{Bucket: persistence.BucketSessions, Key: sid, Value: []byte("{")},
		kv.Write{Bucket: persistence.BucketSessionQueue, Key: fmt.Sprintf("%020d", 1), Value: []byte(sid)},
	)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 1, p.Wait(t, 20*time.Second), p.Output())
	out := p.Output()
	require.Contains(t, out, filepath.Join(dir, persistence.FileName)+" is unreadable")
	require.NotContains(t, out, "restarting", "an actor was restarted into the same corruption")
}

// Teleport unreachable at start is waited for, as an unreachable Fluentd
// is, with an error line per retry: a few minutes of Teleport downtime at
// boot do not leave the unit failed.
func TestTeleportUnreachableAtStartIsWaitedFor(t *testing.T) {
	e := parallelEnv(t)
	addr := harness.FreeAddr(t)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--teleport-addr", addr)...)
	harness.WaitFor(t, 30*time.Second, "waiting for teleport", func() bool {
		return strings.Count(p.Output(), "teleport is unreachable; waiting for it") >= 2
	})
	tp, err := teleportsrv.Start(teleportsrv.Config{TLS: e.PKI.ServerTLS(e.PKI.TeleportServer, e.PKI.TeleportCA), Addr: addr})
	require.NoError(t, err)
	t.Cleanup(tp.Close)
	evs := teleportsrv.GenerateAuditEvents(30, e.T0.Add(time.Second), time.Second, 61)
	var kept []apievents.AuditEvent
	for _, ev := range evs {
		if ev.GetType() != "session.upload" { // no recordings on this server
			kept = append(kept, ev)
		}
	}
	require.NoError(t, tp.AddEvents(kept...))
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	require.Zero(t, harness.Delivered(t, e.Fluentd, kept, nil))
}

// requireNothingStored checks that the daemon stored nothing under
// --storage: the state file, taken at start, holds no start time.
func requireNothingStored(t *testing.T, e *env) {
	t.Helper()
	dir := persistence.Dir(e.Storage, e.TeleportAddr)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return
	}
	st, err := persistence.OpenReadOnly(dir, time.Second)
	require.NoError(t, err)
	defer st.Close()
	_, ok, err := st.StartTime()
	require.NoError(t, err)
	require.False(t, ok, "a start time was stored")
}
