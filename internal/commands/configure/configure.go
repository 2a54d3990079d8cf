// Package configure is the configure command: its flags, checked into
// Options (options.go), and what it writes for a deployment of
// teleport-event-handler: certificates for mutual TLS between the daemon and
// its receiver, the receiver's configuration (fluent.conf for Fluentd,
// rsyslog-teleport.conf for rsyslog: rsyslog.go), a configuration file for
// start, a Teleport role and user, and Helm values. The file names are
// those of Teleport's Event Handler plugin, so that its guides still apply.
package configure

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
)

// The files written, named as upstream names them; the CA's key apart, in
// a directory of its own with a note, so that copying OUT_DIR (or making a
// Secret of it) does not take the key that can sign certificates both
// sides trust.
const (
	CACert    = "ca.crt"
	CAKeyDir  = "ca-private"
	CAKey     = CAKeyDir + "/ca.key"
	CAKeyNote = CAKeyDir + "/README"
	// legacyCAKey is where earlier versions, and the original plugin,
	// put the CA's key: counted as existing, and removed by --force.
	legacyCAKey = "ca.key"
	ServerCert  = "server.crt"
	ServerKey   = "server.key"
	ClientCert  = "client.crt"
	ClientKey   = "client.key"
	FluentConf  = "fluent.conf"
	ConfigFile  = "teleport-event-handler.toml"
	RoleFile    = "teleport-event-handler-role.yaml"
	// SharedKeyFile holds in_forward's shared key, for the forward variant.
	SharedKeyFile = "shared.key"
	// ValuesFile is the Helm chart's values, from the same answers.
	ValuesFile = "teleport-event-handler-values.yaml"
)

// Files lists every file Run writes, in the order it writes them (and
// SharedKeyFile after them, for the forward variant; RsyslogConf in place
// of FluentConf for the syslog variant).
var Files = []string{CACert, CAKey, CAKeyNote, ServerCert, ServerKey, ClientCert, ClientKey, FluentConf, ConfigFile, RoleFile, ValuesFile}

// written are the files Run writes for c.
func written(c *Options) []string { return withSharedKey(c, withReceiverConf(c, Files)) }

// withSharedKey is files, and SharedKeyFile after them for the forward
// variant.
func withSharedKey(c *Options, files []string) []string {
	if c.Forward() {
		return append(slices.Clone(files), SharedKeyFile)
	}
	return files
}

const (
	// Identity is where the configuration expects the identity file that
	// tctl auth sign writes, relative to the output directory.
	Identity = "identity"
	// Storage is the state directory in the configuration, relative to the
	// output directory.
	Storage = "storage"
	// Role and User are the Teleport role and user of the daemon.
	Role = "teleport-event-handler"
	User = "teleport-event-handler"
	// IdentityTTL is how long the identity that the role's header and the
	// next steps sign is valid: enough to try the daemon out. Production
	// renews a short-lived one with Machine ID, as the printed tbot.yaml
	// does.
	IdentityTTL = "12h"
)

// DaemonFiles are the files the daemon reads, of those configure writes and
// the identity the next steps sign: what to install where it runs (and
// SharedKeyFile, for the forward variant).
var DaemonFiles = []string{ConfigFile, CACert, ClientCert, ClientKey, Identity}

// daemonFiles are DaemonFiles for c.
func daemonFiles(c *Options) []string { return withSharedKey(c, DaemonFiles) }

// Names in the certificates. Fluentd's server certificate is checked against
// its DNS names and IP addresses, not its common name.
const (
	caName     = "teleport-event-handler CA"
	clientName = "teleport-event-handler"
)

// passwordBytes of randomness make a generated passphrase (hex encoded), as
// upstream does.
const passwordBytes = 32

//go:embed templates/*.tmpl
var templateFS embed.FS

// Result is what Run wrote.
type Result struct {
	// Dir is the absolute output directory.
	Dir string
	// Password encrypts server.key. PasswordGenerated says Run made it up,
	// in which case it was printed. Both are empty for the syslog variant,
	// whose key is not encrypted.
	Password          string
	PasswordGenerated bool
	// SharedKey is in_forward's shared key, generated for the forward
	// variant (and printed), in fluent.conf and shared.key.
	SharedKey string
}

// Run generates everything in memory, then writes the files into c.OutDir,
// creating it if needed, and prints what it wrote and the next steps to out.
// Unless c.Force is set it writes nothing if any of the files exists.
func Run(c *Options, out io.Writer) (*Result, error) {
	dir, err := filepath.Abs(c.OutDir)
	if err != nil {
		return nil, fmt.Errorf("output directory %s: %w", c.OutDir, err)
	}
	if err := checkDir(c, dir); err != nil {
		return nil, err
	}
	res := &Result{Dir: dir, Password: c.Password}
	// rsyslog reads no encrypted keys: no passphrase for it.
	if res.Password == "" && !c.Syslog() {
		if res.Password, err = generatePassword(); err != nil {
			return nil, err
		}
		res.PasswordGenerated = true
	}
	if c.Forward() {
		if res.SharedKey, err = generatePassword(); err != nil {
			return nil, err
		}
	}
	files, err := render(c, dir, res)
	if err != nil {
		return nil, err
	}
	if err := makeDirs(dir); err != nil {
		return nil, err
	}
	// A CA key beside the new ca.crt would be the old CA's: useless, and
	// what this layout keeps out of OUT_DIR. Removed before anything is
	// written: should that fail, nothing is.
	if err := os.Remove(filepath.Join(dir, legacyCAKey)); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove the old %s: %w", legacyCAKey, err)
	}
	for _, name := range written(c) {
		f := files[name]
		if err := certs.WriteFileAtomic(filepath.Join(dir, name), f.data, f.mode); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	for _, d := range []string{filepath.Join(dir, CAKeyDir), dir} {
		if err := syncDir(d); err != nil {
			return nil, err
		}
	}
	printSummary(out, c, res)
	return res, nil
}

// makeDirs creates OUT_DIR and the CA key's directory, which must be a
// directory of the owner's only, whatever it was before.
func makeDirs(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	keyDir := filepath.Join(dir, CAKeyDir)
	if err := os.Mkdir(keyDir, 0o700); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create %s: %w", CAKeyDir, err)
	}
	if info, err := os.Lstat(keyDir); err != nil || !info.IsDir() {
		return fmt.Errorf("%s is not a directory (a link or a file): remove it and run configure again", keyDir)
	}
	if err := os.Chmod(keyDir, 0o700); err != nil {
		return fmt.Errorf("make %s the owner's only: %w", CAKeyDir, err)
	}
	return nil
}

// checkDir refuses an output directory that is a file, and, without
// --force, one that already holds any of the files: a half-replaced set
// (a new CA with old certificates) would fail in confusing ways.
func checkDir(c *Options, dir string) error {
	info, err := os.Stat(dir)
	switch {
	case os.IsNotExist(err):
		return nil
	case err != nil:
		return &config.Error{Option: "OUT_DIR", Value: c.OutDir, Source: "flag", Problem: err.Error(),
			Fix: "check the path and its permissions"}
	case !info.IsDir():
		return &config.Error{Option: "OUT_DIR", Value: c.OutDir, Source: "flag", Problem: "exists and is not a directory",
			Fix: "give a directory, or a path that does not exist yet"}
	case c.Force:
		return nil
	}
	var existing []string
	for _, name := range append(written(c), legacyCAKey) {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			existing = append(existing, name)
		}
	}
	if len(existing) > 0 {
		return &config.Error{Option: "OUT_DIR", Value: c.OutDir, Source: "flag",
			Problem: "already holds " + strings.Join(existing, ", ") + "; nothing was written",
			Fix:     "move them away, choose another directory, or add --force to overwrite them"}
	}
	return nil
}

func generatePassword() (string, error) {
	b := make([]byte, passwordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate the server key passphrase: %w", err)
	}
	return hex.EncodeToString(b), nil
}

type file struct {
	data []byte
	mode os.FileMode
}

// render makes every file in memory, so that a failure writes nothing.
func render(c *Options, dir string, res *Result) (map[string]file, error) {
	files, err := issue(c, res)
	if err != nil {
		return nil, err
	}
	d, err := newTemplateData(c, dir, res)
	if err != nil {
		return nil, err
	}
	for name, mode := range map[string]os.FileMode{
		receiverConf(c): 0o600, // fluent.conf holds the passphrase; rsyslog's names the key
		ConfigFile:      0o644,
		RoleFile:        0o644,
		ValuesFile:      0o644,
	} {
		src, err := templateFS.ReadFile("templates/" + name + ".tmpl")
		if err != nil {
			return nil, err
		}
		text, err := fill(string(src), d)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", name, err)
		}
		files[name] = file{[]byte(text), mode}
	}
	if c.Forward() {
		files[SharedKeyFile] = file{[]byte(res.SharedKey + "\n"), 0o600}
	}
	return files, nil
}

const caKeyNote = `ca.key is the private key of the CA that signed Fluentd's server certificate
and the daemon's client certificate: whoever holds it can issue certificates
that both sides trust. Neither the daemon nor Fluentd needs it. Keep it
offline (or delete it, and run configure again when the certificates are due
for renewal); never copy it to the daemon's or Fluentd's host, an image or a
Kubernetes Secret.
`

// issue makes the certificates and keys.
func issue(c *Options, res *Result) (map[string]file, error) {
	opts := certs.Options{KeyType: c.KeyType, RSABits: c.RSABits, TTL: c.TTL}
	ca, err := certs.NewCA(caName, opts)
	if err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	server, err := certs.IssueServer(ca, serverName(c), c.DNSNames, c.IPs, opts)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	// Only the server key is encrypted: the daemon's client key is not,
	// as upstream, since Go's TLS stack reads no encrypted keys; nor is
	// rsyslog's server key, since neither its gtls driver nor librelp
	// takes a passphrase (an encrypted one fails as "Decryption has
	// failed" when rsyslog starts, though rsyslogd -N1 passes it).
	serverKey := server.KeyPEM
	if !c.Syslog() {
		if serverKey, err = certs.EncryptKeyPEM(server.KeyPEM, res.Password); err != nil {
			return nil, fmt.Errorf("server key: %w", err)
		}
	}
	client, err := certs.IssueClient(ca, clientName, opts)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return map[string]file{
		CACert:     {ca.CertPEM, 0o644},
		CAKey:      {ca.KeyPEM, 0o600},
		CAKeyNote:  {[]byte(caKeyNote), 0o600},
		ServerCert: {server.CertPEM, 0o644},
		ServerKey:  {serverKey, 0o600},
		ClientCert: {client.CertPEM, 0o644},
		ClientKey:  {client.KeyPEM, 0o600},
	}, nil
}

// serverName is the common name of the receiver's certificate: its first
// name.
func serverName(c *Options) string {
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.IPs[0].String()
}

// templateData fills the templates; paths are absolute so that the files work
// whatever the working directory of Fluentd and the daemon.
type templateData struct {
	// CACert, ServerCert and ServerKey are fluent.conf's, in OUT_DIR.
	CACert, ServerCert, ServerKey string
	// DaemonCA, ClientCert, ClientKey, Identity and Storage are the
	// daemon's: in OUT_DIR, or where --install-dir says they will be.
	DaemonCA, ClientCert, ClientKey, Identity, Storage string
	Password                                           string
	FluentdURL, SessionURL, TeleportAddr               string
	// Forward writes in_forward with <security>: SharedKey for fluent.conf,
	// SharedKeyFile for the daemon.
	Forward                  bool
	SharedKey, SharedKeyFile string
	// Syslog writes rsyslog-teleport.conf, with imrelp if RELP, else imtcp:
	// it routes on the structured data of SDID, to AuditLog and SessionLog.
	Syslog, RELP                           bool
	SDID, AuditLog, SessionLog, MaxMessage string
	// MaxMessageKB is MaxMessage for the daemon's --syslog-max-message-kb,
	// kept in step with rsyslog's.
	MaxMessageKB string
	// Port is where fluent.conf or rsyslog-teleport.conf listens, from
	// FluentdURL.
	Port int
	// AuditTag and SessionMatch are fluent.conf's <match> patterns: Fluentd's
	// HTTP input tags a record with its URL path, / turned into dots.
	AuditTag, SessionMatch  string
	Role, User, IdentityTTL string
	LockEnabled             bool
	// The Helm values' Secret names.
	IdentitySecret, CertSecret, SharedKeySecret string
}

func newTemplateData(c *Options, dir string, res *Result) (*templateData, error) {
	audit, err := url.Parse(c.FluentdURL)
	if err != nil {
		return nil, fmt.Errorf("--fluentd-url: %w", err)
	}
	session, err := url.Parse(c.FluentdSessionURL)
	if err != nil {
		return nil, fmt.Errorf("--fluentd-session-url: %w", err)
	}
	port, err := portOf(audit)
	if err != nil {
		return nil, fmt.Errorf("--fluentd-url: %w", err)
	}
	abs := func(name string) string { return filepath.Join(dir, name) }
	daemon, storage := abs, abs(Storage)
	if c.InstallDir != "" {
		daemon = func(name string) string { return filepath.Join(c.InstallDir, name) }
		storage = SystemdStateDir
	}
	return &templateData{
		CACert: abs(CACert), ServerCert: abs(ServerCert), ServerKey: abs(ServerKey),
		DaemonCA: daemon(CACert), ClientCert: daemon(ClientCert), ClientKey: daemon(ClientKey),
		Identity: daemon(Identity), Storage: storage,
		Forward: c.Forward(), SharedKey: res.SharedKey, SharedKeyFile: daemon(SharedKeyFile),
		Syslog: c.Syslog(), RELP: c.RELP(), SDID: sdID, MaxMessage: rsyslogMaxMessage, MaxMessageKB: strings.TrimSuffix(rsyslogMaxMessage, "k"),
		AuditLog: path.Join(RsyslogLogDir, "audit.log"), SessionLog: path.Join(RsyslogLogDir, "sessions.log"),
		Password:       res.Password,
		FluentdURL:     c.FluentdURL,
		SessionURL:     c.FluentdSessionURL,
		TeleportAddr:   c.TeleportAddr,
		Port:           port,
		AuditTag:       tag(audit.Path),
		SessionMatch:   tag(session.Path) + ".*.log",
		Role:           Role,
		User:           User,
		IdentityTTL:    IdentityTTL,
		IdentitySecret: "teleport-event-handler-identity", CertSecret: "teleport-event-handler-fluentd-tls",
		SharedKeySecret: "teleport-event-handler-fluentd-shared-key",
		LockEnabled:     c.LockEnabled,
	}, nil
}

// portOf is the port of a URL, its scheme's default if it gives none.
func portOf(u *url.URL) (int, error) {
	if u.Port() == "" {
		return defaultPorts[u.Scheme], nil
	}
	return strconv.Atoi(u.Port())
}

// tag is the Fluentd tag in_http gives a request path.
func tag(path string) string {
	return strings.ReplaceAll(strings.Trim(path, "/"), "/", ".")
}

// tomlString quotes s as a TOML basic string: JSON's escapes are a subset of
// TOML's.
func tomlString(s string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// fluentdString quotes s for fluent.conf. Single quotes, because Fluentd
// evaluates #{...} in double-quoted strings as Ruby code; inside single
// quotes only \' and \\ are escapes.
func fluentdString(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("a line break cannot be written in fluent.conf: %q", s)
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'", nil
}

// syncDir makes the renames durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync output directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync output directory: %w", err)
	}
	return nil
}

// printSummary lists the files and the steps that follow. Paths are shown as
// the user gave the directory, so that the commands can be pasted.
func printSummary(w io.Writer, c *Options, res *Result) {
	p := func(name string) string { return filepath.Join(c.OutDir, name) }
	keys := string(c.KeyType)
	if c.KeyType == certs.RSA {
		keys = fmt.Sprintf("RSA %d", c.RSABits)
	}
	grants := "read events and sessions"
	if c.LockEnabled {
		grants += ", lock users"
	}
	sans := make([]string, 0, len(c.DNSNames)+len(c.IPs))
	sans = append(sans, c.DNSNames...)
	for _, ip := range c.IPs {
		sans = append(sans, ip.String())
	}

	ttl := c.TTL.String()
	if c.TTL%time.Hour == 0 {
		ttl = fmt.Sprintf("%dh", c.TTL/time.Hour)
	}
	fmt.Fprintf(w, "Wrote to %s (%s keys, valid for %s):\n", res.Dir, strings.ToUpper(keys), ttl)
	receiver := receiverLines(c, sans)
	lines := [][2]string{
		{CACert, "CA certificate of the mTLS pair"},
		{CAKey, "its key, apart: neither side needs it; keep it offline"},
		receiver[0],
		{"client.crt, client.key", "the daemon's client certificate"},
		receiver[1],
		{ConfigFile, "the configuration for start"},
		{RoleFile, "Teleport role and user: " + grants},
		{ValuesFile, "values for the Helm chart"},
	}
	if c.Forward() {
		lines = append(lines, [2]string{SharedKeyFile, "in_forward's shared key, for the daemon"})
	}
	for _, l := range lines {
		fmt.Fprintf(w, "  %-34s %s\n", l[0], l[1])
	}
	if res.PasswordGenerated {
		fmt.Fprintf(w, "\nThe passphrase of server.key, generated, in fluent.conf and shown only now:\n  %s\n", res.Password)
	}
	if res.SharedKey != "" {
		fmt.Fprintf(w, "\nThe shared key of in_forward, generated, in fluent.conf and %s and shown only now:\n  %s\n", SharedKeyFile, res.SharedKey)
	}
	fmt.Fprintf(w, `
Next steps:
  1. Create the role and the user in Teleport:
       tctl create -f %s
  2. Sign a short-lived identity file for the user, to try it out:
       tctl auth sign --format=file --user=%s --out=%s --ttl=%s
  3. %s
  4. %s
`, p(RoleFile), User, p(Identity), IdentityTTL, receiverStep(c, p), startStep(c, p))
	fmt.Fprintf(w, `
An identity signed by tctl expires (here in %s). For production let
Machine ID keep a short-lived one renewed, as Teleport recommends, rather
than signing a long-lived one: tctl bots add %s --roles=%s
gives a join token, and a tbot.yaml such as
       version: v2
       %s
       onboarding: {join_method: token, token: <the token>}
       storage: {type: directory, path: /var/lib/teleport/bot}
       outputs:
         - type: identity
           destination: {type: directory, path: /var/lib/teleport-event-handler/machine-id}
run with tbot start -c tbot.yaml keeps machine-id/identity fresh; point
--teleport-identity at it and set --teleport-refresh-enabled.
`, IdentityTTL, User, Role, tbotServer(c.TeleportAddr))
}

// tbotServer is tbot.yaml's line for the address configure was given: the
// Auth Service's port (3025) is an auth_server, anything else a
// proxy_server.
func tbotServer(addr string) string {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "3025" {
		return "auth_server: " + addr
	}
	return "proxy_server: " + addr
}

// startStep is the last step: start the daemon, or with --install-dir
// install for the systemd unit what the daemon reads (never ca-private/,
// server.key or fluent.conf (or rsyslog-teleport.conf), the receiver's and
// the CA's secrets) and start it.
func startStep(c *Options, p func(string) string) string {
	if c.InstallDir == "" {
		return "Start the daemon:\n       teleport-event-handler -c " + p(ConfigFile) + " start"
	}
	own := make([]string, 0, len(DaemonFiles)+1)
	for _, name := range daemonFiles(c) {
		own = append(own, p(name))
	}
	return fmt.Sprintf(`Install the daemon's files for the systemd unit (deploy/teleport-event-handler.service,
     whose header installs the binary, the user and the unit), readable by its group only:
       install -d -m 0750 -g %[1]s %[2]s
       install -m 0640 -g %[1]s %[3]s %[2]s/
       systemctl enable --now %[1]s`, User, c.InstallDir, strings.Join(own, " "))
}
