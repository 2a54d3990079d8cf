package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// The Fluentd certificates are rotated while the daemon runs, in the order
// an operator rotates a CA: Fluentd trusts the old and the new CA; the
// daemon's files are renewed (a bundle of both CAs, a client certificate of
// the new one); Fluentd restarts with a certificate of the new CA and
// trusts only the new one. From then on only the renewed files connect, so
// the daemon read its CA and its client certificate again without a
// restart. Audit events go over HTTP, recordings over forward, and nothing
// is lost through the two restarts of Fluentd.
func TestFluentdCertificatesRotatedMidRunLoseNothing(t *testing.T) {
	e := parallelEnv(t)
	e.Fluentd.SetLatency(2 * time.Millisecond)
	evs := e.Seed(3000, 61)
	renewed := testpki.New(t)
	// A client certificate of the new CA whose expiry tells it apart.
	client, err := certs.IssueClient(renewed.FluentdCA, testpki.TeleportUser, certs.Options{KeyType: certs.ECDSA, TTL: 48 * time.Hour})
	require.NoError(t, err)
	require.NotEqual(t, e.PKI.FluentdClient.Cert.NotAfter.Unix(), client.Cert.NotAfter.Unix())
	// The files as a Kubernetes Secret volume holds them: links into
	// ..data, a link that each update swaps at once to a new directory.
	dir := t.TempDir()
	ca, cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	for _, f := range []string{ca, cert, key} {
		require.NoError(t, os.Symlink(filepath.Join("..data", filepath.Base(f)), f))
	}
	version := 0
	install := func(client *certs.Pair, cas ...*certs.Pair) {
		version++
		v := filepath.Join(dir, fmt.Sprintf("..v%d", version))
		require.NoError(t, os.Mkdir(v, 0o755))
		var bundle []byte
		for _, c := range cas {
			bundle = append(bundle, c.CertPEM...)
		}
		require.NoError(t, os.WriteFile(filepath.Join(v, "ca.crt"), bundle, 0o644))
		require.NoError(t, client.WriteFiles(filepath.Join(v, "client.crt"), filepath.Join(v, "client.key")))
		require.NoError(t, os.Symlink(filepath.Base(v), filepath.Join(dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	install(e.PKI.FluentdClient, e.PKI.FluentdCA)
	addr := harness.FreeAddr(t)
	p := harness.Run(t, binary, nil, e.Args("--fluentd-ca", ca, "--fluentd-cert", cert, "--fluentd-key", key,
		"--fluentd-session-url", e.Fluentd.ForwardURL()+"/session", "--metrics-addr", addr)...)
	harness.WaitFor(t, time.Minute, "the first events", func() bool { return e.Audit() > 300 })

	// Fluentd trusts both CAs.
	both := e.PKI.ServerTLS(e.PKI.FluentdServer, e.PKI.FluentdCA)
	both.ClientCAs.AddCert(renewed.FluentdCA.Cert)
	e.Fluentd.Restart(both)
	require.Less(t, e.Audit(), len(evs), "rotated while the backlog is read")
	install(client, e.PKI.FluentdCA, renewed.FluentdCA)
	more := min(e.Audit()+300, len(evs))
	harness.WaitFor(t, time.Minute, "events after the renewal", func() bool { return e.Audit() >= more })

	// Fluentd on the new CA only.
	e.Fluentd.Restart(renewed.ServerTLS(renewed.FluentdServer, renewed.FluentdCA))
	install(client, renewed.FluentdCA)
	live := teleportGenerate(100, time.Now(), 62)
	require.NoError(t, e.Teleport.AddEvents(live...))
	all := append(evs, live...)
	harness.WaitFor(t, 2*time.Minute, "every event", func() bool {
		return harness.TallyAudit(e.Fluentd, all, nil).Lost == 0 && e.TallySessions(defaultSkip).Lost == 0
	})
	// The metrics say the renewed certificate is in use.
	m := harness.Scrape(addr)
	require.Equal(t, float64(client.Cert.NotAfter.Unix()), m["teleport_event_handler_fluentd_certificate_expires_at_seconds"])
	require.Positive(t, m[`teleport_event_handler_fluentd_certificate_reloads_total{result="ok"}`])
	require.Zero(t, m[`teleport_event_handler_fluentd_certificate_reloads_total{result="error"}`])
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 20*time.Second), harness.Tail(p.Output(), 20))
	t.Logf("%d audit events and %d session events delivered through two Fluentd restarts; %d and %d sent twice",
		len(all), e.TallySessions(defaultSkip).Delivered, harness.Delivered(t, e.Fluentd, all, nil), e.SessionsDelivered(defaultSkip))
	for _, failure := range []string{"do not load", "not signed by", "refused the client certificate"} {
		require.NotContains(t, p.Output(), failure, "no connection failed for its certificates")
	}
	require.Contains(t, p.Output(), "fluentd certificate files changed; new connections use them")
}

// The forward protocol's shared key is rotated while the daemon runs: the
// daemon's key file first, then Fluentd restarted with the new key. The
// next connections use it, and nothing is lost.
func TestForwardSharedKeyRotatedMidRunLosesNothing(t *testing.T) {
	t.Parallel()
	e := forwardEnv(t, "first-key")
	evs := e.Seed(500, 63)
	keyFile := filepath.Join(t.TempDir(), "shared.key")
	require.NoError(t, os.WriteFile(keyFile, []byte("first-key\n"), 0o600))
	p := harness.Run(t, binary, nil, e.Args("--fluentd-shared-key-file", keyFile)...)
	harness.WaitFor(t, time.Minute, "the backlog", func() bool { return harness.TallyAudit(e.Fluentd, evs, nil).Lost == 0 })

	require.NoError(t, os.WriteFile(keyFile, []byte("second-key\n"), 0o600))
	e.Fluentd.SetSharedKey([]byte("second-key"))
	e.Fluentd.Restart(e.PKI.ServerTLS(e.PKI.FluentdServer, e.PKI.FluentdCA))
	live := teleportGenerate(100, time.Now(), 64)
	require.NoError(t, e.Teleport.AddEvents(live...))
	all := append(evs, live...)
	harness.WaitFor(t, time.Minute, "the events after the rotation", func() bool {
		return harness.TallyAudit(e.Fluentd, all, nil).Lost == 0
	})
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 20*time.Second), harness.Tail(p.Output(), 20))
	harness.Delivered(t, e.Fluentd, all, nil)
	require.NotContains(t, p.Output(), "second-key")
}
