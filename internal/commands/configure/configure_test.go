package configure_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gravitational/teleport/api/types"
	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
	"github.com/fdfwd/teleport-event-handler/internal/daemon"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func noEnv(string) (string, bool) { return "", false }

// parse resolves configure's command line, as main does.
func parse(t *testing.T, env map[string]string, args ...string) *configure.Options {
	t.Helper()
	c, err := resolve(args, env)
	require.NoError(t, err)
	return c
}

// run configures dir with ECDSA keys (RSA generation would dominate the
// test time) plus args, which may end with TELEPORT_ADDR: options and
// arguments mix.
func run(t *testing.T, dir string, args ...string) (*configure.Result, string) {
	t.Helper()
	var out bytes.Buffer
	res, err := configure.Run(parse(t, nil, append([]string{"--key-type", "ecdsa", dir}, args...)...), &out)
	require.NoError(t, err)
	return res, out.String()
}

func read(t *testing.T, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	return data
}

func TestWritesUpstreamFileNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "event-handler")
	res, out := run(t, dir)
	require.Equal(t, dir, res.Dir)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"ca.crt", "ca-private", "server.crt", "server.key", "client.crt", "client.key",
		"fluent.conf", "teleport-event-handler.toml", "teleport-event-handler-role.yaml", "teleport-event-handler-values.yaml"}, names)

	for _, d := range []string{dir, filepath.Join(dir, "ca-private")} {
		info, err := os.Stat(d)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o700), info.Mode().Perm())
	}
	// The CA's key is apart, with a note that neither side needs it.
	require.Contains(t, string(read(t, dir, "ca-private/README")), "Neither the daemon nor Fluentd needs it")
	require.Contains(t, out, "ca-private/ca.key")
	for name, mode := range map[string]os.FileMode{
		"ca.crt": 0o644, "ca-private/ca.key": 0o600, "ca-private/README": 0o600, "server.crt": 0o644, "server.key": 0o600, "client.crt": 0o644, "client.key": 0o600,
		"fluent.conf": 0o600, "teleport-event-handler.toml": 0o644, "teleport-event-handler-role.yaml": 0o644,
		"teleport-event-handler-values.yaml": 0o644,
	} {
		info, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		require.Equal(t, mode, info.Mode().Perm(), name)
	}

	// The generated passphrase is printed once, and it is in fluent.conf.
	require.True(t, res.PasswordGenerated)
	require.Len(t, res.Password, 64)
	require.Equal(t, 1, strings.Count(out, res.Password))
	require.Contains(t, string(read(t, dir, "fluent.conf")), "private_key_passphrase '"+res.Password+"'")
	for _, step := range []string{
		"tctl create -f " + filepath.Join(dir, "teleport-event-handler-role.yaml"),
		"tctl auth sign --format=file --user=teleport-event-handler --out=" + filepath.Join(dir, "identity"),
		"fluentd -c " + filepath.Join(dir, "fluent.conf"),
		"teleport-event-handler -c " + filepath.Join(dir, "teleport-event-handler.toml") + " start",
	} {
		require.Contains(t, out, step)
	}
}

func TestRefusesToOverwriteWithoutForce(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "unrelated"), []byte("x"), 0o600))
	run(t, dir)
	before := read(t, dir, "ca.crt")

	_, err := configure.Run(parse(t, nil, "--key-type", "ecdsa", dir), io.Discard)
	var cerr *config.Error
	require.ErrorAs(t, err, &cerr)
	require.Contains(t, err.Error(), "already holds ca.crt, ca-private/ca.key, ca-private/README, server.crt")
	require.Contains(t, err.Error(), "add --force")
	require.Equal(t, before, read(t, dir, "ca.crt"))

	// One file is enough to refuse, and then nothing is written.
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "fluent.conf"), []byte("mine"), 0o600))
	_, err = configure.Run(parse(t, nil, "--key-type", "ecdsa", other), io.Discard)
	require.ErrorContains(t, err, "already holds fluent.conf;")
	entries, err := os.ReadDir(other)
	require.NoError(t, err)
	require.Len(t, entries, 1)

	// A CA key where earlier versions and the original plugin put it
	// counts as a file of the set; --force removes it, as it would be the
	// old CA's.
	legacy := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(legacy, "ca.key"), []byte("old"), 0o600))
	_, err = configure.Run(parse(t, nil, legacy), io.Discard)
	require.ErrorContains(t, err, "already holds ca.key;")
	require.NoError(t, os.Mkdir(filepath.Join(legacy, "ca-private"), 0o755))
	run(t, legacy, "--force")
	_, err = os.Stat(filepath.Join(legacy, "ca.key"))
	require.True(t, os.IsNotExist(err), "the old CA's key is left beside the new CA")
	info, err := os.Stat(filepath.Join(legacy, "ca-private"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "a ca-private that was there is made the owner's only")

	// A ca-private that is a link is not followed.
	linked := t.TempDir()
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(linked, "ca-private")))
	_, err = configure.Run(parse(t, nil, "--force", linked), io.Discard)
	require.ErrorContains(t, err, "is not a directory (a link or a file)")

	run(t, dir, "--force")
	require.NotEqual(t, before, read(t, dir, "ca.crt"))
	require.Equal(t, []byte("x"), read(t, dir, "unrelated"))
	// No temporary files are left behind.
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, len(configure.Files)-2+2, "the files, ca-private for two of them, and unrelated")
	entries, err = os.ReadDir(filepath.Join(dir, "ca-private"))
	require.NoError(t, err)
	require.Len(t, entries, 2)
}

func TestRefusesAFileAsOutputDirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	_, err := configure.Run(parse(t, nil, f), io.Discard)
	require.ErrorContains(t, err, "exists and is not a directory")
}

// TestCertificates checks the defaults of upstream (RSA 4096 is too slow for
// a unit test, so 2048): SANs, usages, validity, an encrypted server key
// that opens with the passphrase, and an unencrypted client key.
func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	res, err := configure.Run(parse(t, map[string]string{"FDFWD_PASSWORD": "s3cret 'q' \\"},
		"--length", "2048", "--ttl", "720h", "--dns-names", "fluentd.example.com,localhost", "--ip", "127.0.0.1", "--ip", "::1", dir), &out)
	require.NoError(t, err)
	require.False(t, res.PasswordGenerated)
	require.NotContains(t, out.String(), "s3cret", "a given passphrase is not printed")
	require.Contains(t, string(read(t, dir, "fluent.conf")), `private_key_passphrase 's3cret \'q\' \\'`)

	ca := parseCert(t, read(t, dir, "ca.crt"))
	require.True(t, ca.IsCA)
	server := parseCert(t, read(t, dir, "server.crt"))
	client := parseCert(t, read(t, dir, "client.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, c := range []struct {
		cert  *x509.Certificate
		usage x509.ExtKeyUsage
	}{{server, x509.ExtKeyUsageServerAuth}, {client, x509.ExtKeyUsageClientAuth}} {
		_, err := c.cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{c.usage}})
		require.NoError(t, err)
		require.Equal(t, 2048, c.cert.PublicKey.(*rsa.PublicKey).N.BitLen())
		require.WithinDuration(t, time.Now().Add(720*time.Hour), c.cert.NotAfter, time.Hour)
	}
	require.Equal(t, []string{"fluentd.example.com", "localhost"}, server.DNSNames)
	require.Len(t, server.IPAddresses, 2)
	require.True(t, server.IPAddresses[1].Equal(net.IPv6loopback))
	require.NoError(t, server.VerifyHostname("fluentd.example.com"))

	serverKey := read(t, dir, "server.key")
	_, err = certs.DecryptKeyPEM(serverKey, "wrong")
	require.ErrorIs(t, err, x509.IncorrectPasswordError)
	plain, err := certs.DecryptKeyPEM(serverKey, res.Password)
	require.NoError(t, err)
	_, err = certs.ParsePair(read(t, dir, "server.crt"), plain)
	require.NoError(t, err)
	_, err = certs.ParsePair(read(t, dir, "client.crt"), read(t, dir, "client.key"))
	require.NoError(t, err, "the client key is not encrypted")
	_, err = certs.ParsePair(read(t, dir, "ca.crt"), read(t, dir, "ca-private/ca.key"))
	require.NoError(t, err)
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c
}

// TestGeneratedConfigurationLoads: with an identity file where the next steps
// put it, the configuration file loads as it is.
func TestGeneratedConfigurationLoads(t *testing.T) {
	for _, lock := range []bool{false, true} {
		dir := t.TempDir()
		args := []string{"--fluentd-url", "https://fluentd.example.com:9880/audit/events", "--fluentd-session-url", "https://fluentd.example.com:9880/rec"}
		if lock {
			args = append(args, "--lock-enabled")
		}
		run(t, dir, append(args, "teleport.example.com:443")...)
		writeIdentity(t, dir)

		inv, err := config.Resolve(map[string]string{"config": filepath.Join(dir, "teleport-event-handler.toml")}, noEnv)
		require.NoError(t, err)
		c := inv.Config
		require.Equal(t, filepath.Join(dir, "storage"), c.Storage)
		require.Equal(t, "teleport.example.com:443", c.Teleport.Addr)
		require.Equal(t, filepath.Join(dir, "identity"), c.Teleport.Identity)
		require.True(t, c.Teleport.RefreshEnabled)
		require.Equal(t, "https://fluentd.example.com:9880/audit/events", c.Fluentd.URL)
		require.Equal(t, "https://fluentd.example.com:9880/rec", c.Fluentd.SessionURL)
		require.Equal(t, filepath.Join(dir, "ca.crt"), c.Fluentd.CA)
		require.Equal(t, filepath.Join(dir, "client.crt"), c.Fluentd.Cert)
		require.Equal(t, filepath.Join(dir, "client.key"), c.Fluentd.Key)
		require.Equal(t, lock, c.Lock.Enabled)

		conf := string(read(t, dir, "fluent.conf"))
		for _, want := range []string{"port 9880", "client_cert_auth true", "<match audit.events>", "<match rec.*.log>",
			"ca_path '" + filepath.Join(dir, "ca.crt") + "'", "time_format %iso8601"} {
			require.Contains(t, conf, want)
		}
	}
}

// An output directory with quotes and backslashes stays one TOML string.
func TestPathsAreQuoted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `we"ird\dir`)
	run(t, dir)
	writeIdentity(t, dir)
	inv, err := config.Resolve(map[string]string{"config": filepath.Join(dir, "teleport-event-handler.toml")}, noEnv)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "client.key"), inv.Config.Fluentd.Key)
	require.Contains(t, string(read(t, dir, "fluent.conf")), `ca_path '`+strings.ReplaceAll(filepath.Join(dir, "ca.crt"), `\`, `\\`)+`'`)
}

func writeIdentity(t *testing.T, dir string) *testpki.Bundle {
	t.Helper()
	pki := testpki.New(t)
	require.NoError(t, testpki.WriteIdentityFile(filepath.Join(dir, "identity"), pki.TeleportCA, pki.TeleportClient))
	return pki
}

// TestRoleIsATeleportRole parses the role as Teleport does (YAML to JSON,
// then the resource) and checks what it grants.
func TestRoleIsATeleportRole(t *testing.T) {
	for _, lock := range []bool{false, true} {
		dir := t.TempDir()
		if lock {
			run(t, dir, "--lock-enabled")
		} else {
			run(t, dir)
		}
		docs := yamlDocs(t, read(t, dir, "teleport-event-handler-role.yaml"))
		require.Len(t, docs, 2)

		var role types.RoleV6
		strictJSON(t, docs[0], &role)
		require.Equal(t, types.KindRole, role.Kind)
		require.NoError(t, role.CheckAndSetDefaults())
		require.Equal(t, "teleport-event-handler", role.GetName())
		want := []types.Rule{{Resources: []string{types.KindEvent, types.KindSession}, Verbs: []string{types.VerbList, types.VerbRead}}}
		if lock {
			want = append(want, types.Rule{Resources: []string{types.KindLock}, Verbs: []string{types.VerbCreate, types.VerbUpdate}})
		}
		require.Equal(t, want, role.GetRules(types.Allow))
		require.Empty(t, role.GetRules(types.Deny))

		var user types.UserV2
		strictJSON(t, docs[1], &user)
		require.Equal(t, types.KindUser, user.Kind)
		require.NoError(t, user.CheckAndSetDefaults())
		require.Equal(t, "teleport-event-handler", user.GetName())
		require.Equal(t, []string{role.GetName()}, user.GetRoles())
	}
}

func yamlDocs(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		require.NoError(t, err)
		docs = append(docs, doc)
	}
}

// strictJSON decodes doc into v and fails on fields v does not have, which a
// misspelt key in the role would be.
func strictJSON(t *testing.T, doc map[string]any, v any) {
	t.Helper()
	data, err := json.Marshal(doc)
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v))
}

// TestEndToEnd runs the daemon with the generated configuration, unchanged
// but for the end of the run, against a Fluentd-compatible receiver that
// serves the generated server certificate with its encrypted key and checks
// client certificates against the generated CA, as fluent.conf tells
// Fluentd to.
// endToEnd is a receiver, restarted with the TLS configuration configure
// writes once it has (its port goes into the configuration), and a test
// Teleport server; port is the receiver's for scheme.
type endToEnd struct {
	fd   *fluentdsrv.Receiver
	port string
	pki  *testpki.Bundle
	tp   *teleportsrv.Server
}

func startEndToEnd(t *testing.T, scheme string) *endToEnd {
	t.Helper()
	e := &endToEnd{}
	var err error
	e.pki, err = testpki.Generate(t.TempDir())
	require.NoError(t, err)
	// The test PKI's certificate until configure's exist.
	e.fd, err = fluentdsrv.Start(fluentdsrv.Config{TLS: e.pki.ServerTLS(e.pki.FluentdServer, e.pki.FluentdCA)})
	require.NoError(t, err)
	t.Cleanup(e.fd.Close)
	base := map[string]string{"https": e.fd.URL(), "forward": e.fd.ForwardURL()}[scheme]
	_, e.port, err = net.SplitHostPort(strings.TrimPrefix(base, scheme+"://"))
	require.NoError(t, err)
	e.tp, err = teleportsrv.Start(teleportsrv.Config{TLS: e.pki.ServerTLS(e.pki.TeleportServer, e.pki.TeleportCA)})
	require.NoError(t, err)
	t.Cleanup(e.tp.Close)
	return e
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	e := startEndToEnd(t, "https")
	fd, port, pki, tp := e.fd, e.port, e.pki, e.tp

	res, _ := run(t, dir, "--fluentd-url", "https://localhost:"+port+"/test.log", "--fluentd-session-url", "https://localhost:"+port+"/session", tp.Addr())
	require.NoError(t, testpki.WriteIdentityFile(filepath.Join(dir, "identity"), pki.TeleportCA, pki.TeleportClient))
	fd.Restart(generatedTLS(t, dir, res.Password))

	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	evs := teleportsrv.GenerateAuditEvents(200, start, time.Second, 5)
	require.NoError(t, tp.AddEvents(evs...))
	const sid = "4f1f0e8e-3f0b-4bb4-9d4c-6c1e8f2a1d55"
	require.NoError(t, tp.AddRecording(sid, teleportsrv.GenerateRecording(sid, 30, start)...))
	require.NoError(t, tp.AddEvents(&apievents.SessionUpload{
		Metadata:        apievents.Metadata{ID: "upload-" + sid, Type: "session.upload", Code: "T2005I", Time: start.Add(time.Minute), ClusterName: teleportsrv.DefaultClusterName},
		SessionMetadata: apievents.SessionMetadata{SessionID: sid},
	}))

	inv, err := config.Resolve(map[string]string{"config": filepath.Join(dir, "teleport-event-handler.toml"),
		"start-time": start.Format(time.RFC3339), "exit-on-last-event": "true", "timeout": "100ms"}, noEnv)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The generated session.upload events but sid's have no recordings on
	// the test server: they are given up, and the run says so.
	err = daemon.Run(ctx, inv.Config, zerolog.Nop(), daemon.Options{})
	require.ErrorIs(t, err, daemon.ErrIncomplete)
	require.ErrorContains(t, err, "session recording(s) given up")
	require.NotContains(t, err.Error(), sid)

	got := fd.CountByUID()
	for _, ev := range evs {
		require.GreaterOrEqual(t, got[ev.GetID()], 1, "event %s lost", ev.GetID())
	}
	// Every tag is one that fluent.conf matches.
	conf := string(read(t, dir, "fluent.conf"))
	require.Contains(t, conf, "<match test.log>")
	require.Contains(t, conf, "<match session.*.log>")
	for _, tag := range fd.Tags() {
		ok1, _ := path.Match("test.log", tag)
		ok2, _ := path.Match("session.*.log", tag)
		require.True(t, ok1 || ok2, "tag %s", tag)
	}
	require.NotZero(t, fd.CountTag("session."+sid+".log"), "no session events: %v", fd.Tags())

	// A client certificate of another CA is refused at the handshake.
	otherCA, err := certs.NewCA("other", certs.Options{})
	require.NoError(t, err)
	other, err := certs.IssueClient(otherCA, "other", certs.Options{})
	require.NoError(t, err)
	otherDir := t.TempDir()
	require.NoError(t, other.WriteFiles(filepath.Join(otherDir, "client.crt"), filepath.Join(otherDir, "client.key")))
	creds, err := wire.LoadCredentials(filepath.Join(dir, "ca.crt"), filepath.Join(otherDir, "client.crt"), filepath.Join(otherDir, "client.key"))
	require.NoError(t, err)
	var tlsErr *wire.TLSError
	require.ErrorAs(t, wire.Check(ctx, "https://localhost:"+port+"/test.log", creds), &tlsErr)
	require.Contains(t, tlsErr.Cause, "refused the client certificate")
}

// generatedTLS is what fluent.conf tells Fluentd to serve: configure's
// server certificate with its encrypted key, client certificates checked
// against its CA.
func generatedTLS(t *testing.T, dir, password string) *tls.Config {
	t.Helper()
	// Fluentd opens the key with private_key_passphrase; so does this.
	plain, err := certs.DecryptKeyPEM(read(t, dir, "server.key"), password)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(read(t, dir, "server.crt"), plain)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(read(t, dir, "ca.crt")), "no CA certificate in ca.crt")
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert, // client_cert_auth true
		ClientCAs:    pool,
	}
}

// With --install-dir the configuration points where the systemd unit reads
// it, the next steps install exactly the daemon's files there (never the
// CA's or Fluentd's secrets), as the unit's own header does, and the
// installed set loads.
func TestInstallDirMatchesTheSystemdUnit(t *testing.T) {
	unit := string(read(t, "../../../deploy", "teleport-event-handler.service"))
	require.Contains(t, unit, "-c "+configure.SystemdConfigDir+"/"+configure.ConfigFile+" start")
	require.Contains(t, unit, "StateDirectory="+filepath.Base(configure.SystemdStateDir)+"\n")
	require.Contains(t, unit, "-g teleport-event-handler "+strings.Join(configure.DaemonFiles, " ")+" "+configure.SystemdConfigDir+"/\n")

	dir, install := t.TempDir(), filepath.Join(t.TempDir(), "etc", "teleport-event-handler")
	_, out := run(t, dir, "--install-dir", install, "teleport.example.com:443")
	writeIdentity(t, dir)
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "install -m 0640") {
			line = strings.TrimSpace(l)
		}
	}
	fields := strings.Fields(line)
	require.Equal(t, install+"/", fields[len(fields)-1], out)
	var copied []string
	for _, src := range fields[5 : len(fields)-1] {
		copied = append(copied, filepath.Base(src))
		data, err := os.ReadFile(src)
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(install, 0o750))
		require.NoError(t, os.WriteFile(filepath.Join(install, filepath.Base(src)), data, 0o640))
	}
	require.Equal(t, configure.DaemonFiles, copied)

	inv, err := config.Resolve(map[string]string{"config": filepath.Join(install, configure.ConfigFile)}, noEnv)
	require.NoError(t, err)
	c := inv.Config
	require.Equal(t, configure.SystemdStateDir, c.Storage)
	for _, path := range []string{c.Fluentd.CA, c.Fluentd.Cert, c.Fluentd.Key, c.Teleport.Identity} {
		require.Equal(t, install, filepath.Dir(path))
		require.FileExists(t, path)
	}
	require.Contains(t, string(read(t, dir, "fluent.conf")), "ca_path '"+filepath.Join(dir, "ca.crt")+"'", "Fluentd's files stay where configure wrote them")

	_, err = resolve([]string{"--install-dir", "etc/x", "out"}, nil)
	require.ErrorContains(t, err, "--install-dir")
	require.ErrorContains(t, err, "absolute")
}

// The forward variant: fluent.conf's in_forward requires the client
// certificate and the generated shared key, which the configuration reads
// from shared.key, and the daemon delivers over it.
func TestEndToEndForward(t *testing.T) {
	dir := t.TempDir()
	e := startEndToEnd(t, "forward")
	fd, port, pki, tp := e.fd, e.port, e.pki, e.tp

	res, out := run(t, dir, "--fluentd-url", "forward://localhost:"+port+"/test.log", "--fluentd-session-url", "forward://localhost:"+port+"/session", tp.Addr())
	require.Len(t, res.SharedKey, 64)
	require.Contains(t, out, res.SharedKey, "printed once")
	require.Equal(t, res.SharedKey+"\n", string(read(t, dir, configure.SharedKeyFile)))
	conf := string(read(t, dir, "fluent.conf"))
	for _, want := range []string{"@type forward", "port " + port, "client_cert_auth true", "<security>", "shared_key '" + res.SharedKey + "'", "<match test.log>"} {
		require.Contains(t, conf, want)
	}
	require.NotContains(t, conf, "@type http")
	require.NoError(t, testpki.WriteIdentityFile(filepath.Join(dir, "identity"), pki.TeleportCA, pki.TeleportClient))
	fd.Restart(generatedTLS(t, dir, res.Password))
	fd.SetSharedKey([]byte(res.SharedKey))

	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	evs := teleportsrv.GenerateAuditEvents(300, start, time.Second, 7)
	require.NoError(t, tp.AddEvents(evs...))
	inv, err := config.Resolve(map[string]string{"config": filepath.Join(dir, "teleport-event-handler.toml"),
		"start-time": start.Format(time.RFC3339), "exit-on-last-event": "true", "timeout": "100ms"}, noEnv)
	require.NoError(t, err)
	require.Equal(t, res.SharedKey, inv.Config.Fluentd.SharedKey)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The generated uploads have no recordings on the test server.
	require.ErrorIs(t, daemon.Run(ctx, inv.Config, zerolog.Nop(), daemon.Options{}), daemon.ErrIncomplete)
	got := fd.CountByUID()
	for _, ev := range evs {
		require.Equal(t, 1, got[ev.GetID()], "event %s", ev.GetID())
	}
	require.Positive(t, fd.ForwardMessages()["packed"])
}

// configure --help names every file configure writes, in every variant.
func TestHelpListsEveryFileWritten(t *testing.T) {
	help := configure.Usage()
	for _, args := range [][]string{nil, {"--fluentd-url", "forward://localhost:24224/test.log"}, {"--fluentd-url", "relp+tls://localhost"}} {
		dir := t.TempDir()
		run(t, dir, args...)
		n := 0
		require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			n++
			require.Contains(t, help, d.Name(), "the help names %s", path)
			return nil
		}))
		require.GreaterOrEqual(t, n, 11)
	}
}

// With only --fluentd-url, the session URL is /session on the same input:
// fluent.conf has one <source> for both.
func TestSessionURLFollowsTheAuditURL(t *testing.T) {
	for url, want := range map[string]string{
		"https://fluentd.example.com:9880/audit.log": "https://fluentd.example.com:9880/session",
		"forward://10.0.0.5/teleport":                "forward://10.0.0.5/session",
	} {
		c := parse(t, nil, "--fluentd-url", url, "out")
		require.Equal(t, want, c.FluentdSessionURL, url)
	}
}

// The role's header, the configuration's comment and the next steps sign
// the identity for one TTL, and the tbot.yaml printed for production names
// the address configure was given.
func TestIdentityStepsAgree(t *testing.T) {
	for addr, server := range map[string]string{
		"teleport.example.com:443":   "proxy_server: teleport.example.com:443",
		"auth.example.internal:3025": "auth_server: auth.example.internal:3025",
	} {
		dir := t.TempDir()
		_, out := run(t, dir, addr)
		want := "--ttl=" + configure.IdentityTTL
		require.Contains(t, out, want)
		require.Contains(t, string(read(t, dir, configure.RoleFile)), want)
		require.Contains(t, string(read(t, dir, configure.ConfigFile)), want)
		for _, text := range []string{out, string(read(t, dir, configure.RoleFile)), string(read(t, dir, configure.ConfigFile))} {
			require.NotContains(t, strings.ReplaceAll(text, want, ""), "--ttl=", "one TTL everywhere")
		}
		require.Contains(t, out, server)
		require.NotContains(t, out, "<your proxy>")
	}
}
