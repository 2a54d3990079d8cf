package configure

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
)

// Options is what configure writes: a CA, the receiver's server certificate
// and the daemon's client certificate for mutual TLS, fluent.conf (or
// rsyslog-teleport.conf), a configuration file for start and a Teleport
// role and user, all in OutDir.
type Options struct {
	// OutDir receives the files; it is created if missing.
	OutDir string
	// TeleportAddr is written to the configuration file.
	TeleportAddr string
	// FluentdURL and FluentdSessionURL are written to the configuration
	// file; fluent.conf's port and tags follow from them.
	FluentdURL, FluentdSessionURL string
	// KeyType, RSABits and TTL apply to all three certificates.
	KeyType certs.KeyType
	RSABits int
	TTL     time.Duration
	// DNSNames and IPs are what Fluentd's server certificate is valid for.
	DNSNames []string
	IPs      []net.IP
	// Password encrypts server.key; empty means generate one.
	Password string
	// Force overwrites files that exist; without it nothing is written if
	// any of them does.
	Force bool
	// LockEnabled turns auto-locking on in the configuration file and grants
	// the role the lock permissions that it needs.
	LockEnabled bool
	// InstallDir, when set, is where the daemon's files will be installed
	// (the systemd unit reads /etc/teleport-event-handler): the configuration
	// file's paths point there and its storage is the unit's state directory.
	InstallDir string
	// Warnings are about the original plugin's retired flags that were
	// given (--output).
	Warnings []string
}

// Defaults of the configure command. The URLs match fluent.conf's port and
// the tags that its matches expect.
const (
	DefaultFluentdURL        = "https://localhost:8888/test.log"
	DefaultFluentdSessionURL = "https://localhost:8888/session"
	// PasswordEnv gives the passphrase of server.key without putting it in
	// the process list.
	PasswordEnv = "FDFWD_PASSWORD"
	// SystemdConfigDir and SystemdStateDir are where the systemd unit in
	// deploy/ reads its configuration and keeps its state.
	SystemdConfigDir = "/etc/teleport-event-handler"
	SystemdStateDir  = "/var/lib/teleport-event-handler"
)

var (
	defaultDNSNames = []string{"localhost"}
	defaultIPs      = []net.IP{net.IPv4(127, 0, 0, 1)}
	rsaSizes        = []int{2048, 3072, 4096}
)

// program is the command's name in the messages.
const program = "teleport-event-handler"

// splitList splits repeated, comma-separated values, dropping blanks.
func splitList(values []string) []string {
	var list []string
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
	}
	return list
}

// Flags are the flags of configure, as text: typing them is done
// below, where the errors can name the flag and the fix.
type Flags struct {
	KeyType           string   `long:"key-type"`
	Length            string   `long:"length"`
	TTL               string   `long:"ttl"`
	DNSNames          []string `long:"dns-names"`
	IP                []string `long:"ip"`
	Password          string   `long:"password"` // only to refuse it: see resolvePassword
	FluentdURL        string   `long:"fluentd-url"`
	FluentdSessionURL string   `long:"fluentd-session-url"`
	LockEnabled       bool     `long:"lock-enabled"`
	InstallDir        string   `long:"install-dir"`
	Force             bool     `long:"force"`
	Output            string   `long:"output"` // the original's, retired: see resolveOutput
}

// resolver types configure's flags; isSet reports whether one was on the
// command line, for a flag given empty is not one left out.
type resolver struct {
	flags Flags
	isSet func(flag string) bool
}

func flagError(flag, value, problem, fix string) *config.Error {
	return &config.Error{Option: "--" + flag, Value: value, Source: "flag", Problem: problem, Fix: fix}
}

// Resolve types and checks configure's flags and its arguments (OUT_DIR
// and TELEPORT_ADDR): isSet reports whether a flag was on the command line,
// and lookupEnv is normally os.LookupEnv. Bad input gives a *config.Error.
func Resolve(flags Flags, isSet func(flag string) bool, args []string, lookupEnv func(string) (string, bool)) (*Options, error) {
	cc := &resolver{flags: flags, isSet: isSet}
	c, err := cc.resolveArgs(args)
	if err != nil {
		return nil, err
	}
	for _, step := range []func(*Options) error{cc.resolveOutput, cc.resolveKeys, cc.resolveNames, cc.resolveURLs, addURLHost, cc.resolveInstallDir} {
		if err := step(c); err != nil {
			return nil, err
		}
	}
	if err := cc.resolvePassword(c, lookupEnv); err != nil {
		return nil, err
	}
	return c, nil
}

// resolveArgs checks OUT_DIR and TELEPORT_ADDR and starts from the
// defaults.
func (cc *resolver) resolveArgs(args []string) (*Options, error) {
	const example = "e.g. " + program + " configure ./event-handler teleport.example.com:443"
	switch {
	case len(args) == 0:
		return nil, &config.Error{Option: "OUT_DIR", Problem: "no output directory given",
			Fix: "give the directory to write the files to, " + example}
	case len(args) > 2:
		return nil, &config.Error{Option: "command line", Problem: fmt.Sprintf("unexpected argument %q", args[2]),
			Fix: "configure takes OUT_DIR and TELEPORT_ADDR only; run " + program + " configure --help for the usage"}
	case strings.TrimSpace(args[0]) == "":
		return nil, &config.Error{Option: "OUT_DIR", Problem: "empty output directory", Fix: "give a directory, " + example}
	}
	c := &Options{
		OutDir:            args[0],
		TeleportAddr:      config.Default().Teleport.Addr,
		FluentdURL:        DefaultFluentdURL,
		FluentdSessionURL: DefaultFluentdSessionURL,
		KeyType:           certs.RSA,
		RSABits:           certs.DefaultRSABits,
		TTL:               certs.DefaultTTL,
		DNSNames:          slices.Clone(defaultDNSNames),
		IPs:               slices.Clone(defaultIPs),
		Force:             cc.flags.Force,
		LockEnabled:       cc.flags.LockEnabled,
	}
	if len(args) == 2 {
		c.TeleportAddr = strings.TrimSpace(args[1])
		if host, port, err := net.SplitHostPort(c.TeleportAddr); err != nil || host == "" || port == "" {
			return nil, &config.Error{Option: "TELEPORT_ADDR", Value: args[1], Source: "flag", Problem: "not a host:port address",
				Fix: "give the Auth Service or Proxy Service address such as teleport.example.com:443"}
		}
	}
	return c, nil
}

// resolveOutput accepts the original's --output, which named the export
// target and took only its default, fluentd: the URL schemes choose the
// receiver here.
func (cc *resolver) resolveOutput(c *Options) error {
	if !cc.isSet("output") {
		return nil
	}
	if strings.TrimSpace(cc.flags.Output) != "fluentd" {
		return flagError("output", cc.flags.Output, "not an output: the original plugin's --output accepted only fluentd, and here the scheme of --fluentd-url chooses the receiver",
			"drop --output, and give --fluentd-url as https:// (in_http), forward:// (in_forward), syslog+tls:// or relp+tls:// (rsyslog)")
	}
	c.Warnings = append(c.Warnings, "--output is retired and can be dropped: the scheme of --fluentd-url chooses the receiver (https://, forward://, syslog+tls:// or relp+tls://)")
	return nil
}

// resolveInstallDir checks --install-dir: an absolute path, since the
// daemon runs elsewhere than configure.
func (cc *resolver) resolveInstallDir(c *Options) error {
	if !cc.isSet("install-dir") {
		return nil
	}
	dir := strings.TrimSpace(cc.flags.InstallDir)
	if !filepath.IsAbs(dir) {
		return flagError("install-dir", cc.flags.InstallDir, "not an absolute path",
			"give the directory the daemon's files will be copied to, such as "+SystemdConfigDir+" for the systemd unit")
	}
	c.InstallDir = filepath.Clean(dir)
	return nil
}

// resolveKeys checks --key-type, --length and --ttl.
func (cc *resolver) resolveKeys(c *Options) error {
	f := cc.flags
	if cc.isSet("key-type") {
		switch certs.KeyType(strings.ToLower(strings.TrimSpace(f.KeyType))) {
		case certs.RSA:
		case certs.ECDSA:
			c.KeyType = certs.ECDSA
		default:
			return flagError("key-type", f.KeyType, "unknown key type", "use rsa or ecdsa")
		}
	}
	if cc.isSet("length") {
		if c.KeyType != certs.RSA {
			return flagError("length", f.Length, "sets the size of RSA keys, but --key-type is ecdsa (P-256)",
				"drop --length, or use --key-type rsa")
		}
		n, err := strconv.Atoi(strings.TrimSpace(f.Length))
		if err != nil || !slices.Contains(rsaSizes, n) {
			return flagError("length", f.Length, "not a supported RSA key size", "use 2048, 3072 or 4096")
		}
		c.RSABits = n
	}
	if cc.isSet("ttl") {
		d, err := time.ParseDuration(strings.TrimSpace(f.TTL))
		if err != nil || d <= 0 {
			return flagError("ttl", f.TTL, "not a positive duration", "use a Go duration such as 8760h (a year)")
		}
		c.TTL = d
	}
	return nil
}

// resolveNames checks --dns-names and --ip, the names of Fluentd's server
// certificate.
func (cc *resolver) resolveNames(c *Options) error {
	f := cc.flags
	if cc.isSet("dns-names") {
		c.DNSNames = splitList(f.DNSNames)
		for _, name := range c.DNSNames {
			if net.ParseIP(name) != nil {
				return flagError("dns-names", name, "is an IP address", "give it with --ip")
			}
			if !isDNSName(name) {
				return flagError("dns-names", name, "not a DNS name", "use names such as fluentd.example.com or *.example.com")
			}
		}
	}
	if cc.isSet("ip") {
		c.IPs = nil
		for _, s := range splitList(f.IP) {
			ip := net.ParseIP(s)
			if ip == nil {
				return flagError("ip", s, "not an IP address", "use addresses such as 127.0.0.1 or ::1, and --dns-names for names")
			}
			c.IPs = append(c.IPs, ip)
		}
	}
	if len(c.DNSNames) == 0 && len(c.IPs) == 0 {
		return &config.Error{Option: "--dns-names", Problem: "no DNS name and no IP address for Fluentd's server certificate",
			Fix: "give the names the daemon reaches Fluentd by with --dns-names and --ip"}
	}
	return nil
}

// addURLHost adds the host of --fluentd-url to the names of Fluentd's
// server certificate: the daemon reaches Fluentd by it, and a certificate
// for localhost alone fails the handshake of a real deployment.
func addURLHost(c *Options) error {
	u, err := url.Parse(c.FluentdURL)
	if err != nil {
		return nil // resolveURLs reported it
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		if !slices.ContainsFunc(c.IPs, ip.Equal) {
			c.IPs = append(c.IPs, ip)
		}
	} else if !slices.Contains(c.DNSNames, host) {
		c.DNSNames = append(c.DNSNames, host)
	}
	return nil
}

// resolveURLs checks --fluentd-url and --fluentd-session-url.
func (cc *resolver) resolveURLs(c *Options) error {
	f := cc.flags
	for _, u := range []struct {
		flag string
		dst  *string
		text string
	}{{"fluentd-url", &c.FluentdURL, f.FluentdURL}, {"fluentd-session-url", &c.FluentdSessionURL, f.FluentdSessionURL}} {
		if !cc.isSet(u.flag) {
			continue
		}
		if err := checkURL(u.text); err != "" {
			return flagError(u.flag, u.text, err, "use an https:// URL such as "+DefaultFluentdURL+
				" (in_http), a forward:// URL such as forward://localhost:24224/test.log (in_forward), or "+
				"syslog+tls://localhost:6514 or relp+tls://localhost:2514 (rsyslog)")
		}
		*u.dst = u.text
	}
	if cc.isSet("fluentd-url") && !cc.isSet("fluentd-session-url") {
		c.FluentdSessionURL = sessionURLOf(c.FluentdURL)
	}
	// The daemon posts recordings to <session-url>.<sid>.log; the syslog
	// transports ignore the path.
	if strings.HasSuffix(c.FluentdSessionURL, "/") && !isSyslog(c.FluentdSessionURL) {
		return flagError("fluentd-session-url", c.FluentdSessionURL, "ends with /, and .<session-id>.log is appended to it",
			"drop the trailing /, as in "+DefaultFluentdSessionURL)
	}
	// One <source> of fluent.conf, or one input of rsyslog-teleport.conf,
	// serves both URLs.
	if a, s := hostPort(c.FluentdURL), hostPort(c.FluentdSessionURL); a != s || scheme(c.FluentdURL) != scheme(c.FluentdSessionURL) {
		src := "default"
		if cc.isSet("fluentd-session-url") {
			src = "flag"
		}
		return &config.Error{Option: "--fluentd-session-url", Value: c.FluentdSessionURL, Source: src,
			Problem: "is not on the scheme, host and port of --fluentd-url " + c.FluentdURL + ", and " + receiverConf(c) + " has one input",
			Fix:     "give both URLs the same scheme, host and port"}
	}
	return nil
}

// sessionURLOf is the session URL that goes with an audit URL: the same
// input (scheme, host and port, which fluent.conf's one <source> serves)
// and the session tag of the defaults. A syslog URL is its own session
// URL: its path is ignored, and rsyslog-teleport.conf tells recordings by
// their structured data.
func sessionURLOf(audit string) string {
	if isSyslog(audit) {
		return audit
	}
	u, _ := url.Parse(audit) // checked by resolveURLs
	def, _ := url.Parse(DefaultFluentdSessionURL)
	u.Path, u.RawPath = def.Path, ""
	return u.String()
}

// resolvePassword takes the passphrase of server.key from the environment;
// empty means one is generated. --password is understood only to say so.
func (cc *resolver) resolvePassword(c *Options, lookupEnv func(string) (string, bool)) error {
	if cc.isSet("password") {
		return &config.Error{Option: "--password", Value: "(not shown)", Source: "flag",
			Problem: "a secret on the command line is shown to every user by ps and kept in shell history",
			Fix:     "set " + PasswordEnv + ", or leave it out to have one generated and printed once"}
	}
	// An empty variable counts as unset: make passes PASS= through.
	if v, ok := lookupEnv(PasswordEnv); ok && v != "" {
		c.Password = v
	}
	// A passphrase that is not used would let one believe server.key is
	// encrypted.
	if c.Password != "" && c.Syslog() {
		return &config.Error{Option: PasswordEnv, Value: "(not shown)", Source: "env " + PasswordEnv,
			Problem: "is set, but rsyslog reads no encrypted keys (neither its gtls driver nor librelp takes a passphrase), so server.key is written unencrypted for " + scheme(c.FluentdURL) + "://",
			Fix:     "unset " + PasswordEnv + " and keep server.key readable by rsyslog only"}
	}
	if strings.IndexFunc(c.Password, unicode.IsControl) >= 0 {
		return &config.Error{Option: PasswordEnv, Value: "(not shown)", Source: "env " + PasswordEnv, Problem: "contains control characters, which fluent.conf cannot hold",
			Fix: "use printable characters only"}
	}
	return nil
}

func scheme(s string) string {
	u, _ := url.Parse(s)
	return u.Scheme
}

// Forward reports whether configure writes the forward variant: an
// in_forward source, with a shared key.
func (c *Options) Forward() bool { return scheme(c.FluentdURL) == "forward" }

// hostPort is the host:port of a checked URL, the port made explicit.
func hostPort(s string) string {
	u, _ := url.Parse(s)
	port := u.Port()
	if port == "" {
		port = strconv.Itoa(defaultPorts[u.Scheme])
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

var dnsLabel = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// isDNSName accepts host names and a leading wildcard label (*.example.com).
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for i, label := range strings.Split(s, ".") {
		if i == 0 && label == "*" && strings.Contains(s, ".") {
			continue
		}
		if !dnsLabel.MatchString(label) {
			return false
		}
	}
	return true
}

// Usage is the help of configure, laid out like that of start.
func Usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s configure [options] OUT_DIR [TELEPORT_ADDR]\n\n", program)
	b.WriteString("Writes into OUT_DIR (created if missing) what a deployment needs, under the\n" +
		"file names of Teleport's Event Handler plugin:\n" +
		"  ca.crt                  a CA for mutual TLS between the daemon and Fluentd\n" +
		"  ca-private/ca.key       its key, apart with a README, to keep offline:\n" +
		"                          neither side needs it\n" +
		"  server.crt, server.key  the receiver's server certificate; the key is\n" +
		"                          encrypted, but for rsyslog, which reads no\n" +
		"                          encrypted keys\n" +
		"  client.crt, client.key  the daemon's client certificate (key unencrypted)\n" +
		"  fluent.conf             Fluentd's input (HTTP, or forward for a forward://\n" +
		"                          --fluentd-url) with mTLS and JSON parsing\n" +
		"  rsyslog-teleport.conf   for a syslog+tls:// or relp+tls:// --fluentd-url,\n" +
		"                          instead of fluent.conf: rsyslog's input with\n" +
		"                          mTLS, writing events and recordings to files\n" +
		"  shared.key              in_forward's shared key, with a forward:// URL only\n" +
		"  teleport-event-handler.toml         configuration for start (-c)\n" +
		"  teleport-event-handler-role.yaml    Teleport role and user, for tctl create\n" +
		"  teleport-event-handler-values.yaml  values for the Helm chart (deploy/helm)\n" +
		"Existing files are left alone unless --force is given. TELEPORT_ADDR is the\n" +
		"Auth Service or Proxy Service address; default localhost:3025.\n\nOptions:\n")
	for _, o := range []struct{ flag, value, help, def string }{
		{"key-type", "rsa|ecdsa", "Key algorithm of the certificates", "rsa"},
		{"length", "BITS", "RSA key size: 2048, 3072 or 4096", strconv.Itoa(certs.DefaultRSABits)},
		{"ttl", "DURATION", "Validity of the certificates", strings.TrimSuffix(certs.DefaultTTL.String(), "0m0s")},
		{"dns-names", "LIST", "DNS names of Fluentd's server certificate; repeat or comma-separate", strings.Join(defaultDNSNames, ",")},
		{"ip", "LIST", "IP addresses of Fluentd's server certificate; '' for none", "127.0.0.1"},
		{"fluentd-url", "URL", "Receiver URL for audit events, in the configuration: https://\n" +
			"      or forward:// (Fluentd), syslog+tls:// or relp+tls:// (rsyslog)", DefaultFluentdURL},
		{"fluentd-session-url", "URL", "Base URL for session recordings", "/session on --fluentd-url's input"},
		{"lock-enabled", "", "Enable user auto-locking and grant the role create and update on locks", ""},
		{"install-dir", "DIR", "Where the daemon's files go, for the configuration's paths\n      (the systemd unit's: " + SystemdConfigDir + ")", "the paths of OUT_DIR"},
		{"force", "", "Overwrite files that exist", ""},
	} {
		b.WriteString("  --" + o.flag)
		if o.value != "" {
			b.WriteString("=" + o.value)
		}
		b.WriteString("\n      " + o.help + ".\n")
		if o.def != "" {
			b.WriteString("      Default: " + o.def + ".\n")
		}
	}
	b.WriteString("  -h, --help\n      Show this help.\n")
	b.WriteString("\nThe passphrase that encrypts server.key comes from " + PasswordEnv + " (not a\n" +
		"flag: ps shows every user the command line); without it one is generated\n" +
		"and printed once.\n")
	return b.String()
}
