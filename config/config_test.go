package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gravitational/teleport/api/identityfile"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

// fixture holds valid credentials and a few broken files in a temp dir.
type fixture struct {
	dir                      string
	ca, cert, key            string // a CA and a client certificate it signed
	ca2, cert2, key2         string // copies, to tell sources apart
	otherKey                 string // a key that matches no certificate
	garbage                  string // not PEM at all
	identity                 string // a Teleport identity file
	storage                  string // does not exist
	fluentdURL, fluentdSURL  string
	requiredArgs             []string
	requiredArgsWithIdentity []string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, storage: filepath.Join(dir, "storage"),
		fluentdURL: "https://fluentd.example.com:8888/test.log", fluentdSURL: "https://fluentd.example.com:8888/session"}

	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "event-handler"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	require.NoError(t, err)

	caPEM := pemBlock("CERTIFICATE", caDER)
	certPEM := pemBlock("CERTIFICATE", der)
	keyPEM := ecKeyPEM(t, key)
	f.ca = writeFile(t, dir, "ca.pem", caPEM)
	f.cert = writeFile(t, dir, "cert.pem", certPEM)
	f.key = writeFile(t, dir, "key.pem", keyPEM)
	f.ca2 = writeFile(t, dir, "ca2.pem", caPEM)
	f.cert2 = writeFile(t, dir, "cert2.pem", certPEM)
	f.key2 = writeFile(t, dir, "key2.pem", keyPEM)
	f.otherKey = writeFile(t, dir, "other-key.pem", ecKeyPEM(t, newKey(t)))
	f.garbage = writeFile(t, dir, "garbage.pem", "this is not PEM\n")

	// The identity file: key, SSH certificate, TLS certificate, SSH CA, TLS CA.
	sshPub, err := ssh.NewPublicKey(&key.PublicKey)
	require.NoError(t, err)
	caSigner, err := ssh.NewSignerFromKey(caKey)
	require.NoError(t, err)
	sshCert := &ssh.Certificate{
		Key: sshPub, CertType: ssh.UserCert, KeyId: "event-handler",
		ValidPrincipals: []string{"event-handler"},
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
	}
	require.NoError(t, sshCert.SignCert(rand.Reader, caSigner))
	id := keyPEM + string(ssh.MarshalAuthorizedKey(sshCert)) + certPEM +
		"@cert-authority * " + string(ssh.MarshalAuthorizedKey(caSigner.PublicKey())) + caPEM
	f.identity = writeFile(t, dir, "identity", id)

	f.requiredArgs = []string{"start", "--storage", f.storage,
		"--fluentd-url", f.fluentdURL, "--fluentd-session-url", f.fluentdSURL,
		"--fluentd-ca", f.ca, "--fluentd-cert", f.cert, "--fluentd-key", f.key}
	f.requiredArgsWithIdentity = append(slices.Clone(f.requiredArgs), "--teleport-identity", f.identity)
	return f
}

// args returns a valid start command line without the flags in drop, plus extra.
func (f *fixture) args(drop []string, extra ...string) []string {
	var args []string
	base := f.requiredArgsWithIdentity
	args = append(args, base[0])
	for i := 1; i < len(base); i += 2 {
		if !slices.Contains(drop, strings.TrimPrefix(base[i], "--")) {
			args = append(args, base[i], base[i+1])
		}
	}
	return append(args, extra...)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return key
}

func ecKeyPEM(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pemBlock("EC PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// parse resolves a command line as the program's parser hands it to this
// package: start, or a command on the state, and each option's text by long
// name. It reads only what these tests type (-c FILE, -d, --flag VALUE,
// --flag=VALUE, switches); the parser itself is tested with the program.
func parse(args []string, lookupEnv func(string) (string, bool)) (*Resolved, error) {
	given := map[string]string{}
	var words []string
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") {
			words = append(words, args[i])
			continue
		}
		at := slices.IndexFunc(options, func(o *option) bool { return o.flag == name || o.lead == name && name != "" || string(o.short) == name })
		if at < 0 {
			return nil, fmt.Errorf("the test's command line: unknown flag %s", args[i])
		}
		o := options[at]
		if !hasValue && o.isSwitch() {
			value = "true"
		} else if !hasValue {
			i++
			value = args[i]
		}
		if name != o.lead {
			name = o.flag
		}
		given[name] = value
	}
	if len(words) > 0 && words[0] == "start" {
		return Resolve(given, lookupEnv)
	}
	return ResolveForState(given, lookupEnv, slices.Contains(words, "replay"))
}

func parseStart(t *testing.T, args []string, env map[string]string) *Config {
	t.Helper()
	inv, err := parse(args, envOf(env))
	require.NoError(t, err)
	require.NotNil(t, inv.Config)
	return inv.Config
}

func TestDefault(t *testing.T) {
	def := Default()
	require.Equal(t, 5*time.Second, def.Timeout)
	require.Equal(t, 20, def.Batch)
	require.Empty(t, def.Types)
	require.Empty(t, def.SkipEventTypes)
	require.Equal(t, []string{"print", "desktop.recording"}, def.SkipSessionTypes)
	require.True(t, def.StartTime.IsZero())
	require.Equal(t, 24*time.Hour, def.WindowSize)
	require.Equal(t, 5, def.Concurrency)
	require.Equal(t, "localhost:3025", def.Teleport.Addr)
	require.Equal(t, time.Minute, def.Teleport.RefreshInterval)
	require.Equal(t, 3, def.Lock.FailedAttempts)
	require.Equal(t, time.Minute, def.Lock.Period)
	require.Zero(t, def.Lock.For)
	require.Zero(t, def.Fluentd.MaxConnections)
	require.Equal(t, 1, def.Fluentd.Batch)
	require.Equal(t, 8192, def.Fluentd.MaxMessageKB, "Fluentd's default buffer chunk")

	// Parse with only the required options gives the defaults, with the
	// connection limit resolved.
	f := newFixture(t)
	cfg := parseStart(t, f.args(nil), nil)
	want := Default()
	want.Storage = f.storage
	want.Fluentd = FluentdConfig{URL: f.fluentdURL, SessionURL: f.fluentdSURL, CA: f.ca, Cert: f.cert, Key: f.key, MaxConnections: 10, Batch: 1, MaxMessageKB: 8192, SyslogFacility: "logaudit", Facility: 13, SyslogMaxMessageKB: 8}
	want.Teleport.Identity = f.identity
	require.Equal(t, want, *cfg)
}

func TestPrecedence(t *testing.T) {
	f := newFixture(t)
	file := writeFile(t, f.dir, "config.toml", `
timeout = "10s"
batch = 30
dry-run = true
types = ["file.a", "file.b"]
[teleport]
addr = "file:3025"
`)
	env := map[string]string{
		"FDFWD_TIMEOUT":       "20s",
		"FDFWD_BATCH":         "40",
		"FDFWD_DRY_RUN":       "false",
		"FDFWD_TYPES":         "env.a",
		"FDFWD_TELEPORT_ADDR": "env:3025",
	}
	flags := []string{"--timeout=30s", "--batch", "50", "--dry-run", "--types", "flag.a,flag.b,flag.c", "--teleport-addr", "flag:3025"}

	type want struct {
		timeout time.Duration
		batch   int
		dryRun  bool
		types   []string
		addr    string
	}
	tests := []struct {
		name  string
		file  bool
		env   map[string]string
		flags []string
		want  want
	}{
		{name: "default", want: want{5 * time.Second, 20, false, nil, "localhost:3025"}},
		{name: "file beats default", file: true, want: want{10 * time.Second, 30, true, []string{"file.a", "file.b"}, "file:3025"}},
		{name: "env beats file", file: true, env: env, want: want{20 * time.Second, 40, false, []string{"env.a"}, "env:3025"}},
		{name: "flag beats env", file: true, env: env, flags: flags, want: want{30 * time.Second, 50, true, []string{"flag.a", "flag.b", "flag.c"}, "flag:3025"}},
		{name: "env without file", env: env, want: want{20 * time.Second, 40, false, []string{"env.a"}, "env:3025"}},
		{name: "false flag beats true env", env: map[string]string{"FDFWD_DRY_RUN": "true"}, flags: []string{"--dry-run=false"},
			want: want{5 * time.Second, 20, false, nil, "localhost:3025"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := f.args(nil, tt.flags...)
			if tt.file {
				args = append(args, "-c", file)
			}
			cfg := parseStart(t, args, tt.env)
			require.Equal(t, tt.want.timeout, cfg.Timeout)
			require.Equal(t, tt.want.batch, cfg.Batch)
			require.Equal(t, tt.want.dryRun, cfg.DryRun)
			if tt.want.types == nil {
				require.Empty(t, cfg.Types)
			} else {
				require.Equal(t, tt.want.types, cfg.Types)
			}
			require.Equal(t, tt.want.addr, cfg.Teleport.Addr)
		})
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	f := newFixture(t)
	a := writeFile(t, f.dir, "a.toml", `batch = 1`)
	b := writeFile(t, f.dir, "b.toml", `batch = 2`)

	inv, err := parse(f.args(nil), envOf(map[string]string{"FDFWD_CONFIG": a}))
	require.NoError(t, err)
	require.Equal(t, a, inv.File)
	require.Equal(t, 1, inv.Config.Batch)

	// -c wins over FDFWD_CONFIG, and works before the command as upstream.
	args := append([]string{"-c", b}, f.args(nil)...)
	inv, err = parse(args, envOf(map[string]string{"FDFWD_CONFIG": a}))
	require.NoError(t, err)
	require.Equal(t, b, inv.File)
	require.Equal(t, 2, inv.Config.Batch)
}

func TestWholeFile(t *testing.T) {
	f := newFixture(t)
	file := writeFile(t, f.dir, "config.toml", fmt.Sprintf(`
storage = %q
timeout = "10s"
batch = 100
types = "user.login,session.start"
skip-event-types = ["app.session.chunk"]
skip-session-types = ["print"]
start-time = "2024-01-02T15:04:05Z"
window-size = "12h"
concurrency = 3
dry-run = false
exit-on-last-event = true
debug = true

[forward.fluentd]
url = %q
session-url = %q
ca = %q
cert = %q
key = %q
max-connections = 4
batch = 50

[teleport]
addr = "teleport.example.com:443"
identity = %q
refresh.enabled = true
refresh.interval = "2m"
`, f.storage, f.fluentdURL, f.fluentdSURL, f.ca, f.cert, f.key, f.identity))

	cfg := parseStart(t, []string{"start", "--config", file}, nil)
	require.Equal(t, Config{
		Storage:          f.storage,
		Timeout:          10 * time.Second,
		LogFormat:        "auto",
		Batch:            100,
		Types:            []string{"user.login", "session.start"},
		SkipEventTypes:   []string{"app.session.chunk"},
		SkipSessionTypes: []string{"print"},
		StartTime:        time.Date(2024, 1, 2, 15, 4, 5, 0, time.UTC),
		WindowSize:       12 * time.Hour,
		Concurrency:      3,
		ReadyGrace:       time.Minute,
		LateEventLag:     5 * time.Minute,
		DeadLetterMaxMB:  256,
		ExitOnLastEvent:  true,
		Debug:            true,
		Fluentd:          FluentdConfig{URL: f.fluentdURL, SessionURL: f.fluentdSURL, CA: f.ca, Cert: f.cert, Key: f.key, MaxConnections: 4, Batch: 50, MaxMessageKB: 8192, SyslogFacility: "logaudit", Facility: 13, SyslogMaxMessageKB: 8},
		Teleport: TeleportConfig{Addr: "teleport.example.com:443", Identity: f.identity,
			RefreshEnabled: true, RefreshInterval: 2 * time.Minute},
		Lock: Default().Lock,
	}, *cfg)
}

func TestLockKeys(t *testing.T) {
	f := newFixture(t)
	want := LockConfig{Enabled: true, FailedAttempts: 5, Period: 2 * time.Minute, For: 30 * time.Minute, MaxLocks: 10}
	tests := []struct {
		name string
		toml string
		env  map[string]string
		args []string
	}{
		{name: "top-level keys", toml: `
lock-enabled = true
lock-failed-attempts-count = 5
lock-period = "2m"
lock-for = "30m"
`},
		{name: "lock table", toml: `
[lock]
enabled = true
failed-attempts-count = 5
period = "2m"
for = "30m"
`},
		{name: "environment", env: map[string]string{
			"FDFWD_LOCKING_ENABLED": "yes", "FDFWD_LOCKING_FAILED_ATTEMPTS": "5",
			"FDFWD_LOCKING_PERIOD": "2m", "FDFWD_LOCKING_FOR": "30m",
		}},
		{name: "flags", args: []string{"--lock-enabled", "--lock-failed-attempts-count=5", "--lock-period=2m", "--lock-for=30m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := f.args(nil, tt.args...)
			if tt.toml != "" {
				args = append(args, "-c", writeFile(t, t.TempDir(), "config.toml", tt.toml))
			}
			require.Equal(t, want, parseStart(t, args, tt.env).Lock)
		})
	}
}

func TestTeleportRefreshKeys(t *testing.T) {
	f := newFixture(t)
	for _, toml := range []string{
		fmt.Sprintf("[teleport]\nidentity = %q\nrefresh.enabled = true\nrefresh.interval = \"2m\"\n", f.identity),
		fmt.Sprintf("[teleport]\nidentity = %q\n[teleport.refresh]\nenabled = true\ninterval = \"2m\"\n", f.identity),
		fmt.Sprintf("teleport.identity = %q\nteleport.refresh = { enabled = true, interval = \"2m\" }\n", f.identity),
	} {
		file := writeFile(t, t.TempDir(), "config.toml", toml)
		cfg := parseStart(t, append(f.args([]string{"teleport-identity"}), "-c", file), nil)
		require.Equal(t, TeleportConfig{Addr: "localhost:3025", Identity: f.identity, RefreshEnabled: true, RefreshInterval: 2 * time.Minute},
			cfg.Teleport, toml)
	}
}

func TestAliases(t *testing.T) {
	f := newFixture(t)
	teleport := []string{"--teleport-key", f.key, "--teleport-ca", f.ca}
	drop := []string{"fluentd-ca", "fluentd-cert", "fluentd-key", "teleport-identity"}
	aliases := map[string]string{
		"FDWRD_FLUENTD_CA":      f.ca2,
		"FDWRD_FLUENTD_CERT":    f.cert2,
		"FDWRD_FLUENTD_KEY":     f.key2,
		"FDWRD_TELEPORT_CERT":   f.cert2,
		"FDWRD_MAX_CONNECTIONS": "7",
	}

	cfg := parseStart(t, f.args(drop, teleport...), aliases)
	require.Equal(t, f.ca2, cfg.Fluentd.CA)
	require.Equal(t, f.cert2, cfg.Fluentd.Cert)
	require.Equal(t, f.key2, cfg.Fluentd.Key)
	require.Equal(t, f.cert2, cfg.Teleport.Cert)
	require.Equal(t, 7, cfg.Fluentd.MaxConnections)

	// The documented name wins over the misspelt one.
	both := map[string]string{
		"FDFWD_FLUENTD_CA":      f.ca,
		"FDFWD_FLUENTD_CERT":    f.cert,
		"FDFWD_FLUENTD_KEY":     f.key,
		"FDFWD_TELEPORT_CERT":   f.cert,
		"FDFWD_MAX_CONNECTIONS": "9",
	}
	for k, v := range aliases {
		both[k] = v
	}
	cfg = parseStart(t, f.args(drop, teleport...), both)
	require.Equal(t, f.ca, cfg.Fluentd.CA)
	require.Equal(t, f.cert, cfg.Fluentd.Cert)
	require.Equal(t, f.key, cfg.Fluentd.Key)
	require.Equal(t, f.cert, cfg.Teleport.Cert)
	require.Equal(t, 9, cfg.Fluentd.MaxConnections)
}

// Search pages grow unless --batch is set, from any source; Teleport
// refuses a limit over 10000, so --batch does too.
func TestBatchGrowsUnlessSet(t *testing.T) {
	f := newFixture(t)
	cfg := parseStart(t, f.args(nil), nil)
	require.True(t, cfg.GrowBatch)
	require.Equal(t, 20, cfg.Batch)
	file := writeFile(t, f.dir, "batch.toml", "batch = 20\n")
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"flag": {args: []string{"--batch", "500"}},
		"env":  {env: map[string]string{"FDFWD_BATCH": "500"}},
		"file": {args: []string{"-c", file}},
	} {
		cfg := parseStart(t, f.args(nil, tc.args...), tc.env)
		require.False(t, cfg.GrowBatch, name)
	}
	_, err := parse(f.args(nil, "--batch", "10001"), envOf(nil))
	require.ErrorContains(t, err, `invalid --batch "10001" (from the command line): must be at most 10000`)
	cfg = parseStart(t, f.args(nil, "--batch", "10000"), nil)
	require.Equal(t, MaxBatch, cfg.Batch)
}

func TestLists(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		toml string
		want []string
	}{
		{name: "default", want: []string{"print", "desktop.recording"}},
		{name: "empty flag", args: []string{"--skip-session-types="}, want: []string{}},
		{name: "empty separate flag value", args: []string{"--skip-session-types", ""}, want: []string{}},
		{name: "empty env", env: map[string]string{"FDFWD_SKIP_SESSION_TYPES": ""}, want: []string{}},
		{name: "empty file string", toml: `skip-session-types = ""`, want: []string{}},
		{name: "empty file array", toml: `skip-session-types = []`, want: []string{}},
		{name: "file string", toml: `skip-session-types = "print, resize"`, want: []string{"print", "resize"}},
		{name: "file array", toml: `skip-session-types = ["print", "resize"]`, want: []string{"print", "resize"}},
		{name: "env blanks dropped", env: map[string]string{"FDFWD_SKIP_SESSION_TYPES": " print ,, resize,"}, want: []string{"print", "resize"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := f.args(nil, tt.args...)
			if tt.toml != "" {
				args = append(args, "-c", writeFile(t, t.TempDir(), "config.toml", tt.toml))
			}
			require.Equal(t, tt.want, parseStart(t, args, tt.env).SkipSessionTypes)
		})
	}
}

// The storage the deploy files leave to the operator's file: a flag, a
// variable or the file name it, else systemd's (and the image's)
// $STATE_DIRECTORY; a relative one is taken from the working directory, as
// the original plugin takes its storage = "./storage".
func TestStorageDefaultAndRelativePaths(t *testing.T) {
	f := newFixture(t)
	wd, err := os.Getwd()
	require.NoError(t, err)
	state := filepath.Join(f.dir, "state")
	relative := writeFile(t, f.dir, "relative.toml", `storage = "./storage"`)
	absolute := writeFile(t, f.dir, "absolute.toml", `storage = "/srv/event-handler/storage"`)
	none := writeFile(t, f.dir, "none.toml", `batch = 20`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"state directory when nothing names one", f.args([]string{"storage"}, "-c", none),
			map[string]string{"STATE_DIRECTORY": state}, state},
		{"the first of systemd's list", f.args([]string{"storage"}),
			map[string]string{"STATE_DIRECTORY": state + ":/var/lib/other"}, state},
		{"the file wins over the state directory", f.args([]string{"storage"}, "-c", absolute),
			map[string]string{"STATE_DIRECTORY": state}, "/srv/event-handler/storage"},
		{"relative to the working directory", f.args([]string{"storage"}, "-c", relative),
			map[string]string{"STATE_DIRECTORY": state}, filepath.Join(wd, "storage")},
		{"the environment wins over the file", f.args([]string{"storage"}, "-c", absolute),
			map[string]string{"STATE_DIRECTORY": state, "FDFWD_STORAGE": "/env/storage"}, "/env/storage"},
		{"the flag wins", f.args(nil, "-c", absolute), map[string]string{"STATE_DIRECTORY": state}, f.storage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, parseStart(t, tt.args, tt.env).Storage)
		})
	}

	_, err = parse(f.args([]string{"storage"}, "-c", none), envOf(nil))
	require.ErrorContains(t, err, "--storage")
	require.ErrorContains(t, err, "required option not set")
}

func TestBoolsAndTimes(t *testing.T) {
	f := newFixture(t)
	// Every spelling of the original (kong's bool mapper: true, 1, yes and
	// their opposites, in any case), and those of strconv.ParseBool and
	// systemd.
	for text, want := range map[string]bool{"true": true, "TRUE": true, "True": true, "t": true, "T": true, "1": true,
		"yes": true, "Yes": true, "y": true, "on": true,
		"false": false, "False": false, "f": false, "F": false, "0": false, "no": false, "NO": false, "n": false, "off": false} {
		cfg := parseStart(t, f.args(nil), map[string]string{"FDFWD_EXIT_ON_LAST_EVENT": text, "FDFWD_DEBUG": text})
		require.Equal(t, want, cfg.ExitOnLastEvent, text)
		require.Equal(t, want, cfg.Debug, text)
	}

	// -d before the command, as upstream documents it.
	require.True(t, parseStart(t, append([]string{"-d"}, f.args(nil)...), nil).Debug)

	cfg := parseStart(t, f.args(nil, "--start-time", "2024-01-02T15:04:05+01:00"), nil)
	require.True(t, cfg.StartTime.Equal(time.Date(2024, 1, 2, 14, 4, 5, 0, time.UTC)))
	// A TOML datetime works as well as a string.
	file := writeFile(t, f.dir, "config.toml", "start-time = 2024-01-02T15:04:05Z\n")
	cfg = parseStart(t, f.args(nil, "-c", file), nil)
	require.True(t, cfg.StartTime.Equal(time.Date(2024, 1, 2, 15, 4, 5, 0, time.UTC)))
}

func TestCredentials(t *testing.T) {
	f := newFixture(t)
	// The identity file of the fixture is one identityfile itself accepts.
	_, err := identityfile.ReadFile(f.identity)
	require.NoError(t, err)

	// Certificate, key and CA instead of an identity file.
	cfg := parseStart(t, f.args([]string{"teleport-identity"}, "--teleport-cert", f.cert, "--teleport-key", f.key, "--teleport-ca", f.ca), nil)
	require.Equal(t, TeleportConfig{Addr: "localhost:3025", Cert: f.cert, Key: f.key, CA: f.ca, RefreshInterval: time.Minute}, cfg.Teleport)

	// A dry run needs no Fluentd credentials.
	cfg = parseStart(t, f.args([]string{"fluentd-ca", "fluentd-cert", "fluentd-key"}, "--dry-run"), nil)
	require.True(t, cfg.DryRun)
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	cfgFile := func(t *testing.T, content string) string {
		return writeFile(t, t.TempDir(), "config.toml", content)
	}
	notDir := writeFile(t, f.dir, "not-a-dir", "")
	teleportPair := []string{"--teleport-cert", f.cert, "--teleport-key", f.key, "--teleport-ca", f.ca}
	noIdentity := []string{"teleport-identity"}

	tests := []struct {
		name string
		drop []string
		args []string
		env  map[string]string
		toml string // written to a file given with -c
		want []string
	}{
		// Every missing required option in one run.
		{name: "several missing", drop: []string{"storage", "fluentd-url", "fluentd-ca"},
			want: []string{"--storage, --fluentd-url, --fluentd-ca: required options not set", "FDFWD_STORAGE", "FDFWD_FLUENTD_URL", "FDFWD_FLUENTD_CA", "mTLS"}},
		// Event types: exact names only.
		{name: "wildcard type", args: []string{"--types", "user.*"},
			want: []string{`invalid --types "user.*"`, "wildcards are not supported", "user.login"}},
		{name: "odd type", args: []string{"--skip-event-types", "Session Start"},
			want: []string{`invalid --skip-event-types "Session Start"`, "not an event type"}},
		// The Teleport address is host:port.
		{name: "teleport address with scheme", drop: noIdentity, args: append([]string{"--teleport-addr", "https://teleport.example.com:443"}, teleportPair...),
			want: []string{`invalid --teleport-addr "https://teleport.example.com:443"`, "host:port without a scheme", "teleport.example.com:443"}},
		{name: "teleport address without port", drop: noIdentity, args: append([]string{"--teleport-addr", "teleport.example.com"}, teleportPair...),
			want: []string{`invalid --teleport-addr "teleport.example.com"`, "no port", "teleport.example.com:3025", "teleport.example.com:443"}},

		// Required options.
		{name: "no storage", drop: []string{"storage"},
			want: []string{"--storage: required option not set", "FDFWD_STORAGE", "storage in the config file"}},
		{name: "no fluentd url", drop: []string{"fluentd-url"}, want: []string{"--fluentd-url: required option not set", "FDFWD_FLUENTD_URL"}},
		{name: "no session url", drop: []string{"fluentd-session-url"}, want: []string{"--fluentd-session-url: required option not set"}},
		{name: "no session url in dry run", drop: []string{"fluentd-session-url"}, args: []string{"--dry-run"}, want: []string{"--fluentd-session-url: required"}},
		{name: "no fluentd ca", drop: []string{"fluentd-ca"}, want: []string{"--fluentd-ca: required option not set", "mTLS", "FDFWD_FLUENTD_CA"}},
		{name: "no fluentd cert", drop: []string{"fluentd-cert"}, want: []string{"--fluentd-cert: required option not set"}},
		{name: "no fluentd key", drop: []string{"fluentd-key"}, want: []string{"--fluentd-key: required option not set"}},
		{name: "empty teleport addr from env", env: map[string]string{"FDFWD_TELEPORT_ADDR": ""},
			want: []string{"--teleport-addr (from FDFWD_TELEPORT_ADDR): required option is empty"}},
		{name: "empty storage from env", drop: []string{"storage"}, env: map[string]string{"FDFWD_STORAGE": ""},
			want: []string{"--storage (from FDFWD_STORAGE): required option is empty"}},
		{name: "fluentd cert without key in dry run", drop: []string{"fluentd-key"}, args: []string{"--dry-run"},
			want: []string{"--fluentd-key: required with --fluentd-cert"}},

		// Teleport credentials.
		{name: "identity and cert", args: []string{"--teleport-cert", f.cert},
			want: []string{"invalid --teleport-identity " + fmt.Sprintf("%q", f.identity), "cannot be combined with --teleport-cert"}},
		{name: "no credentials", drop: noIdentity, want: []string{"--teleport-identity (or --teleport-cert, --teleport-key and --teleport-ca): required option not set", "FDFWD_TELEPORT_IDENTITY"}},
		{name: "credentials missing with other options", drop: append([]string{"fluentd-url"}, noIdentity...),
			want: []string{"--fluentd-url, --teleport-identity (or --teleport-cert, --teleport-key and --teleport-ca): required options not set",
				"FDFWD_FLUENTD_URL", "FDFWD_TELEPORT_IDENTITY"}},
		{name: "partial credentials", drop: noIdentity, args: []string{"--teleport-cert", f.cert},
			want: []string{"invalid --teleport-cert", "also needs --teleport-key and --teleport-ca, which are not set"}},
		{name: "partial credentials from env", drop: noIdentity, env: map[string]string{"FDFWD_TELEPORT_CERT": f.cert, "FDFWD_TELEPORT_KEY": f.key},
			want: []string{"(from FDFWD_TELEPORT_CERT)", "also needs --teleport-ca, which is not set"}},
		{name: "refresh without identity", drop: noIdentity, args: append([]string{"--teleport-refresh-enabled"}, teleportPair...),
			want: []string{`invalid --teleport-refresh-enabled "true" (from the command line)`, "--teleport-identity is not set"}},

		// Files.
		{name: "unreadable fluentd ca", drop: []string{"fluentd-ca"}, args: []string{"--fluentd-ca", filepath.Join(f.dir, "missing.pem")},
			want: []string{"invalid --fluentd-ca", "missing.pem", "no such file or directory"}},
		{name: "unreadable identity", drop: noIdentity, args: []string{"--teleport-identity", filepath.Join(f.dir, "missing-id")},
			want: []string{"invalid --teleport-identity", "missing-id", "no such file or directory"}},
		{name: "directory as key", drop: []string{"fluentd-key"}, args: []string{"--fluentd-key", f.dir},
			want: []string{"invalid --fluentd-key", "is a directory"}},
		{name: "garbage fluentd cert", drop: []string{"fluentd-cert"}, args: []string{"--fluentd-cert", f.garbage},
			want: []string{"invalid --fluentd-cert", "garbage.pem", "no PEM certificate"}},
		{name: "garbage fluentd key", drop: []string{"fluentd-key"}, args: []string{"--fluentd-key", f.garbage},
			want: []string{"invalid --fluentd-key", "garbage.pem", "does not load with --fluentd-cert", "PEM"}},
		{name: "mismatched fluentd key", drop: []string{"fluentd-key"}, args: []string{"--fluentd-key", f.otherKey},
			want: []string{"invalid --fluentd-key", "other-key.pem", "private key does not match public key"}},
		{name: "garbage fluentd ca", drop: []string{"fluentd-ca"}, args: []string{"--fluentd-ca", f.garbage},
			want: []string{"invalid --fluentd-ca", "no PEM certificate"}},
		{name: "key as fluentd ca", drop: []string{"fluentd-ca"}, args: []string{"--fluentd-ca", f.key},
			want: []string{"invalid --fluentd-ca", "no PEM certificate"}},
		{name: "garbage teleport ca", drop: noIdentity, args: []string{"--teleport-cert", f.cert, "--teleport-key", f.key, "--teleport-ca", f.garbage},
			want: []string{"invalid --teleport-ca", "no PEM certificate"}},
		{name: "mismatched teleport key", drop: noIdentity, args: []string{"--teleport-cert", f.cert, "--teleport-key", f.otherKey, "--teleport-ca", f.ca},
			want: []string{"invalid --teleport-key", "private key does not match"}},
		{name: "garbage identity", drop: noIdentity, args: []string{"--teleport-identity", f.garbage},
			want: []string{"invalid --teleport-identity", "not a usable identity file", "could not find SSH cert"}},
		{name: "identity without tls", drop: noIdentity, args: []string{"--teleport-identity", writeFile(t, f.dir, "ssh-only", sshOnlyIdentity(t, f))},
			want: []string{"invalid --teleport-identity", "no usable TLS credentials"}},
		{name: "storage is a file", drop: []string{"storage"}, args: []string{"--storage", notDir},
			want: []string{"invalid --storage", "exists and is not a directory"}},

		// URLs.
		{name: "http url", drop: []string{"fluentd-url"}, args: []string{"--fluentd-url", "http://fluentd:8888/a"},
			want: []string{`invalid --fluentd-url "http://fluentd:8888/a" (from the command line): not an https://, a forward://, a syslog+tls:// or a relp+tls:// URL`, "forward://fluentd.example.com:24224/test.log"}},
		{name: "url without host", drop: []string{"fluentd-session-url"}, env: map[string]string{"FDFWD_FLUENTD_SESSION_URL": "https:///s"},
			want: []string{`invalid --fluentd-session-url "https:///s" (from FDFWD_FLUENTD_SESSION_URL): not an https://, a forward://, a syslog+tls:// or a relp+tls:// URL with a host`}},
		{name: "not a url", drop: []string{"fluentd-url"}, args: []string{"--fluentd-url", "https://[::1"},
			want: []string{`invalid --fluentd-url "https://[::1"`, "not a URL"}},
		// A session's id is appended to the session URL: without a path it
		// would change the host (https://fluentd:8888 + ".<sid>.log").
		{name: "session url without path", drop: []string{"fluentd-session-url"}, args: []string{"--fluentd-session-url", "https://fluentd:8888"},
			want: []string{`invalid --fluentd-session-url "https://fluentd:8888"`, "has no path, which Fluentd needs as the tag"}},
		{name: "url without path", drop: []string{"fluentd-url"}, args: []string{"--fluentd-url", "https://fluentd:8888/"},
			want: []string{`invalid --fluentd-url "https://fluentd:8888/"`, "has no path"}},
		{name: "session url with query", drop: []string{"fluentd-session-url"}, args: []string{"--fluentd-session-url", "https://fluentd:8888/s?x=1"},
			want: []string{`invalid --fluentd-session-url "https://fluentd:8888/s?x=1"`, "has a query or a fragment"}},

		// Durations.
		{name: "bad duration from env", env: map[string]string{"FDFWD_TIMEOUT": "5x"},
			want: []string{`invalid --timeout "5x" (from FDFWD_TIMEOUT): time: unknown unit "x" in duration "5x"; use a Go duration such as 5s or 1m`}},
		{name: "zero timeout", args: []string{"--timeout", "0s"}, want: []string{`invalid --timeout "0s"`, "must be positive"}},
		{name: "negative timeout", args: []string{"--timeout=-1s"}, want: []string{`invalid --timeout "-1s"`, "must be positive"}},
		{name: "zero window", args: []string{"--window-size", "0"}, want: []string{`invalid --window-size "0"`, "must be positive"}},
		{name: "negative refresh interval", args: []string{"--teleport-refresh-interval=-1m"}, want: []string{`invalid --teleport-refresh-interval "-1m"`, "must not be negative"}},
		{name: "zero refresh interval when refreshing", args: []string{"--teleport-refresh-enabled", "--teleport-refresh-interval", "0s"},
			want: []string{`invalid --teleport-refresh-interval "0s"`, "must be positive"}},
		{name: "negative lock period", args: []string{"--lock-period=-1m"}, want: []string{`invalid --lock-period "-1m"`, "must not be negative"}},
		{name: "zero lock period when locking", args: []string{"--lock-enabled", "--lock-period", "0s"},
			want: []string{`invalid --lock-period "0s"`, "must be positive"}},
		{name: "negative lock for", env: map[string]string{"FDFWD_LOCKING_FOR": "-5m"}, want: []string{`invalid --lock-for "-5m" (from FDFWD_LOCKING_FOR)`, "must not be negative"}},

		// Integers, booleans, times.
		{name: "bad batch", args: []string{"--batch", "many"}, want: []string{`invalid --batch "many"`, "not a whole number", "such as 20"}},
		{name: "zero batch", env: map[string]string{"FDFWD_BATCH": "0"}, want: []string{`invalid --batch "0" (from FDFWD_BATCH): must be at least 1`}},
		{name: "zero concurrency", args: []string{"--concurrency", "0"}, want: []string{`invalid --concurrency "0"`, "must be at least 1"}},
		{name: "unknown export mode", args: []string{"--export-mode", "bulk"}, want: []string{`invalid --export-mode "bulk"`, "use auto, export or search"}},
		{name: "zero fluentd batch", env: map[string]string{"FDFWD_FLUENTD_BATCH": "0"}, want: []string{`invalid --fluentd-batch "0" (from FDFWD_FLUENTD_BATCH): must be at least 1`}},
		{name: "huge fluentd batch", args: []string{"--fluentd-batch", "100000"}, want: []string{`invalid --fluentd-batch "100000"`, "must be at most 1000"}},
		{name: "negative max connections", args: []string{"--fluentd-max-connections=-1"}, want: []string{`invalid --fluentd-max-connections "-1"`, "must be at least 0"}},
		{name: "zero failed attempts", args: []string{"--lock-failed-attempts-count", "0"}, want: []string{`invalid --lock-failed-attempts-count "0"`, "must be at least 1"}},
		{name: "bad bool env", env: map[string]string{"FDFWD_DRY_RUN": "maybe"}, want: []string{`invalid --dry-run "maybe" (from FDFWD_DRY_RUN): not a boolean; use true or false`}},
		{name: "bad bool flag", args: []string{"--dry-run=maybe"}, want: []string{"command line", "--dry-run"}},
		{name: "bad start time", args: []string{"--start-time", "2024-01-02"},
			want: []string{`invalid --start-time "2024-01-02"`, "not an RFC 3339 time", "2024-01-02T15:04:05Z"}},

		// The file.
		{name: "unreadable config", args: []string{"-c", filepath.Join(f.dir, "missing.toml")},
			want: []string{"invalid --config", "missing.toml", "no such file or directory"}},
		{name: "malformed toml", toml: "batch = 20\ntimeout = \"5s\nconcurrency = 3\n",
			want: []string{"config file (in ", "config.toml, line 2)", "invalid TOML"}},
		{name: "malformed toml after key", toml: "batch = 20\ntimeout = 5s\n",
			want: []string{"config file (in ", "config.toml, line 2)", "invalid TOML", "timeout"}},
		{name: "unknown key", toml: "batch = 20\n[forward.fluentd]\nulr = \"https://f/a\"\n",
			want: []string{"forward.fluentd.ulr (in ", "config.toml, line 3): unknown key"}},
		{name: "unknown top-level key", toml: "bach = 20\n", want: []string{"bach (in ", "config.toml, line 1): unknown key"}},
		{name: "value from file", toml: "batch = 20\ntimeout = \"5x\"\n",
			want: []string{`invalid --timeout "5x" (from timeout in `, "config.toml, line 2)", `unknown unit "x"`}},
		{name: "bad nested value from file", toml: "[lock]\nperiod = \"-1m\"\n",
			want: []string{`invalid --lock-period "-1m" (from lock.period in `, "config.toml, line 2)", "must not be negative"}},
		{name: "array for a number", toml: "batch = [1, 2]\n", want: []string{"invalid --batch", "batch in", "an array where a single value is expected"}},
		{name: "array of numbers for a list", toml: "types = [1, 2]\n", want: []string{"invalid --types", "list items must be strings"}},
		{name: "table where a value goes", toml: "[timeout]\nx = 1\n", want: []string{"timeout.x", "unknown key"}},
		{name: "value where a table goes", toml: "teleport = \"x\"\n", want: []string{"teleport (in ", "must be a table"}},
		{name: "lock key given twice", toml: "lock-enabled = true\n[lock]\nenabled = false\n",
			want: []string{"lock.enabled (in ", "config.toml, line 3): sets the same option as lock-enabled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := f.args(tt.drop, tt.args...)
			if tt.toml != "" {
				args = append(args, "-c", cfgFile(t, tt.toml))
			}
			inv, err := parse(args, envOf(tt.env))
			require.Error(t, err)
			require.Nil(t, inv)
			var cerr *Error
			require.True(t, errors.As(err, &cerr), "want a *config.Error, got %T", err)
			msg := err.Error()
			require.NotContains(t, msg, "\n")
			for _, want := range tt.want {
				require.Contains(t, msg, want)
			}
		})
	}
}

// sshOnlyIdentity is an identity file with no TLS certificate.
func sshOnlyIdentity(t *testing.T, f *fixture) string {
	t.Helper()
	id, err := identityfile.ReadFile(f.identity)
	require.NoError(t, err)
	return string(id.PrivateKey) + string(id.Certs.SSH)
}

func TestErrorMessage(t *testing.T) {
	for _, tt := range []struct {
		err  Error
		want string
	}{
		{Error{Option: "--timeout", Value: "5x", Source: "env FDFWD_TIMEOUT", Problem: `time: unknown unit "x" in duration "5x"`, Fix: "use a Go duration such as 5s or 1m"},
			`invalid --timeout "5x" (from FDFWD_TIMEOUT): time: unknown unit "x" in duration "5x"; use a Go duration such as 5s or 1m`},
		{Error{Option: "--storage", Problem: "required option not set", Fix: "set --storage"},
			"--storage: required option not set; set --storage"},
		{Error{Option: "--batch", Value: "0", Source: "default", Problem: "must be at least 1"},
			`invalid --batch "0" (the default): must be at least 1`},
		{Error{Option: "--batch", Value: "0", Source: "file /etc/eh.toml:3", key: "batch", Problem: "multi\nline"},
			`invalid --batch "0" (from batch in /etc/eh.toml:3): multi line`},
	} {
		require.Equal(t, tt.want, tt.err.Error())
	}
}

// The help of start's options offers every option but the retired ones,
// with its variables, keys and default, in 80 columns.
func TestStartHelp(t *testing.T) {
	var b strings.Builder
	WriteGlobalHelp(&b)
	WriteStartHelp(&b)
	help := b.String()
	for _, o := range options {
		if o.retired != nil {
			require.NotContains(t, help, "--"+o.flag, "retired options are not offered")
			continue
		}
		if o.secret {
			require.NotContains(t, help, "--"+o.flag+"=", "a secret is refused as a flag, so not offered as one")
		} else {
			require.Contains(t, help, "--"+o.flag)
		}
		for _, env := range o.env {
			require.Contains(t, help, env)
		}
		for _, key := range o.keys {
			require.Contains(t, help, key)
		}
	}
	for _, def := range []string{"Default: localhost:3025.", "Default: 1m.", "Default: 2 x --concurrency.", "Default: 20, doubling up to 1000 while a backlog is read.",
		"Default: 5s.", "Default: print,desktop.recording.", "Default: 5.", "Default: 24h.", "Default: 3.", "Default: 0, never expires."} {
		require.Contains(t, help, def)
	}
	for _, line := range strings.Split(help, "\n") {
		require.LessOrEqual(t, len(line), 80, line)
	}
}

// TestNoWrites checks that parsing, including a failed validation, leaves
// the file system alone.
func TestNoWrites(t *testing.T) {
	f := newFixture(t)
	before := listDir(t, f.dir)
	_, err := parse(f.args(nil), envOf(nil))
	require.NoError(t, err)
	_, err = parse(f.args([]string{"fluentd-key"}), envOf(nil))
	require.Error(t, err)
	require.Equal(t, before, listDir(t, f.dir))
	require.NoDirExists(t, f.storage)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		names = append(names, path)
		return err
	}))
	return names
}

// TestOptionTable keeps the table consistent: every option settable from the
// environment, names unique, and every Config field reachable.
func TestOptionTable(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range options {
		require.NotEmpty(t, o.env, o.flag)
		require.NotEmpty(t, o.help, o.flag)
		for _, name := range append([]string{"--" + o.flag}, o.env...) {
			require.False(t, seen[name], "duplicate %s", name)
			seen[name] = true
		}
		if o.field != nil && !o.isSwitch() {
			require.NotEmpty(t, o.value, "--%s needs a value placeholder", o.flag)
		}
	}
	// Setting every option to a non-zero value leaves no field zero.
	var c Config
	for _, o := range options {
		if o.field == nil {
			continue
		}
		text := "x"
		switch o.field(&Config{}).(type) {
		case *bool:
			text = "true"
		case *int:
			text = "7"
		case *time.Duration:
			text = "7s"
		case *time.Time:
			text = "2024-01-02T15:04:05Z"
		}
		problem, _ := o.set(&c, text)
		require.Empty(t, problem, o.flag)
	}
	requireNoZeroFields(t, c)
}

func requireNoZeroFields(t *testing.T, c Config) {
	t.Helper()
	for _, v := range []any{c.Storage, c.Timeout, c.Batch, c.Types, c.SkipEventTypes, c.SkipSessionTypes, c.StartTime,
		c.WindowSize, c.Concurrency, c.DryRun, c.ExitOnLastEvent, c.Debug,
		c.Fluentd.URL, c.Fluentd.SessionURL, c.Fluentd.CA, c.Fluentd.Cert, c.Fluentd.Key, c.Fluentd.MaxConnections, c.Fluentd.Batch,
		c.Teleport.Addr, c.Teleport.Identity, c.Teleport.CA, c.Teleport.Cert, c.Teleport.Key, c.Teleport.RefreshEnabled, c.Teleport.RefreshInterval,
		c.Lock.Enabled, c.Lock.FailedAttempts, c.Lock.Period, c.Lock.For} {
		require.NotZero(t, v)
	}
}
