package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gravitational/teleport/api/identityfile"
	"github.com/prometheus/exporter-toolkit/web"
)

// validate checks a resolved configuration and returns the first problem.
// The order goes from what a user most likely got wrong (a missing option) to
// what needs the files read. It only reads: the storage directory in
// particular is left alone, it is created when the daemon starts.
func (r *resolver) validate(c *Config) error {
	for _, check := range []func(*Config) error{
		r.checkRequired,
		r.checkTypes,
		r.checkTeleportAddr,
		r.checkURLs,
		r.checkMetricsAddr,
		r.checkLogFormat,
		r.checkNumbers,
		r.checkTeleport,
		r.checkFluentd,
		r.checkStorage,
	} {
		if err := check(c); err != nil {
			return err
		}
	}
	return nil
}

func (r *resolver) checkRequired(c *Config) error {
	// teleport-addr has a default, so it can only be emptied, by mistake.
	required := []string{"storage", "fluentd-url", "fluentd-session-url", "teleport-addr"}
	if !c.DryRun {
		required = append(required, "fluentd-ca", "fluentd-cert", "fluentd-key")
	}
	// Every one that is missing, in one message.
	var missing, ways []string
	mtls := false
	for _, flag := range required {
		o := optionByFlag(flag)
		if *o.field(c).(*string) != "" {
			continue
		}
		if _, set := r.got[flag]; set {
			return r.fail(flag, "required option is empty", "set it to a non-empty value")
		}
		missing, ways = append(missing, "--"+flag), append(ways, o.ways())
		mtls = mtls || flag == "fluentd-ca" || flag == "fluentd-cert" || flag == "fluentd-key"
	}
	// The Teleport credentials too, so that one run names all that is
	// missing (checkTeleport explains a partial set).
	if t := c.Teleport; t.Identity == "" && t.Cert == "" && t.Key == "" && t.CA == "" {
		missing = append(missing, "--teleport-identity (or --teleport-cert, --teleport-key and --teleport-ca)")
		ways = append(ways, optionByFlag("teleport-identity").ways())
	}
	if len(missing) == 0 {
		return nil
	}
	problem := "required option not set"
	if len(missing) > 1 {
		problem = "required options not set"
	}
	if mtls {
		problem += ": Fluentd is reached over mTLS (unless --dry-run)"
	}
	return &Error{Option: strings.Join(missing, ", "), Problem: problem, Fix: "set " + strings.Join(ways, "; ")}
}

// checkTeleportAddr wants host:port, as the original plugin does; the
// common mistakes get the address they meant.
func (r *resolver) checkTeleportAddr(c *Config) error {
	addr := c.Teleport.Addr
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		hostPort := strings.TrimSuffix(rest, "/")
		if _, _, err := net.SplitHostPort(hostPort); err != nil && scheme == "https" {
			hostPort += ":443"
		}
		return r.fail("teleport-addr", "must be host:port without a scheme", "use "+hostPort)
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		host := strings.TrimSuffix(addr, ":")
		return r.fail("teleport-addr", "has no port",
			fmt.Sprintf("use %s:3025 for the Auth Service or %s:443 for the Proxy Service", host, host))
	}
	return nil
}

// ways lists where a required option can be set, for messages.
func (o *option) ways() string {
	if o.lead == "" {
		return fmt.Sprintf("--%s, %s or %s in the config file", o.flag, o.env[0], o.keys[0])
	}
	return fmt.Sprintf("--%s, %s or %s in the config file (or by their older names --%s, %s, %s)",
		o.lead, o.env[0], o.keys[0], o.flag, o.env[1], o.keys[1])
}

// fluentdURLFix names the accepted forms of a Fluentd URL.
const fluentdURLFix = "use https://fluentd.example.com:8888/test.log for Fluentd's in_http, " +
	"forward://fluentd.example.com:24224/test.log for its in_forward, " +
	"or syslog+tls://siem.example.com:6514 or relp+tls://siem.example.com:2514 for a syslog receiver (all over TLS with the client certificate)"

func (r *resolver) checkURLs(c *Config) error {
	for _, flag := range []string{"fluentd-url", "fluentd-session-url"} {
		raw := *optionByFlag(flag).field(c).(*string)
		if _, err := url.Parse(raw); err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return r.fail(flag, "not a URL: "+err.Error(), fluentdURLFix)
		}
		if problem := CheckFluentdURL(raw, Schemes); problem != "" {
			if u, err := url.Parse(raw); err == nil && u.User != nil {
				s := r.got[flag]
				s.text = u.Redacted() // the message must not carry the password
				r.got[flag] = s
			}
			return r.fail(flag, problem, fluentdURLFix)
		}
	}
	return nil
}

func (r *resolver) checkMetricsAddr(c *Config) error {
	if c.HealthAddr != "" {
		if _, port, err := net.SplitHostPort(c.HealthAddr); err != nil || port == "" {
			return r.fail("health-addr", "not a host:port address", "use an address such as 0.0.0.0:9466")
		}
	}
	if c.WebConfigFile != "" {
		if c.MetricsAddr == "" {
			return r.fail("web-config-file", "secures --metrics-addr, which is not set", "set --metrics-addr too, or drop --web-config-file")
		}
		if err := web.Validate(c.WebConfigFile); err != nil {
			return r.fail("web-config-file", "not a valid web configuration: "+err.Error(),
				"see https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md for its format")
		}
	}
	if c.MetricsAddr == "" {
		return nil
	}
	if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
		return r.fail("metrics-addr", "not a host:port address", "use an address such as 127.0.0.1:9465 (or :9465 for every interface)")
	}
	return nil
}

func (r *resolver) checkNumbers(c *Config) error {
	atLeast := func(flag string, v, least int) error {
		if v < least {
			return r.fail(flag, fmt.Sprintf("must be at least %d", least), fmt.Sprintf("use a number >= %d", least))
		}
		return nil
	}
	atMost := func(flag string, v, most int) error {
		if v > most {
			return r.fail(flag, fmt.Sprintf("must be at most %d", most), fmt.Sprintf("use a number <= %d", most))
		}
		return nil
	}
	positive := func(flag string, d time.Duration) error {
		if d <= 0 {
			return r.fail(flag, "must be positive", "use a duration such as "+optionByFlag(flag).defaultText())
		}
		return nil
	}
	notNegative := func(flag string, d time.Duration, fix string) error {
		if d < 0 {
			return r.fail(flag, "must not be negative", fix)
		}
		return nil
	}
	checks := []error{
		atLeast("batch", c.Batch, 1),
		atMost("batch", c.Batch, MaxBatch),
		atLeast("concurrency", c.Concurrency, 1),
		atLeast("fluentd-max-connections", c.Fluentd.MaxConnections, 0),
		atLeast("fluentd-batch", c.Fluentd.Batch, 1),
		atMost("fluentd-batch", c.Fluentd.Batch, MaxFluentdBatch),
		atLeast("fluentd-max-message-kb", c.Fluentd.MaxMessageKB, 1),
		atMost("fluentd-max-message-kb", c.Fluentd.MaxMessageKB, MaxForwardMessageKB),
		atLeast("syslog-max-message-kb", c.Fluentd.SyslogMaxMessageKB, 1),
		atMost("syslog-max-message-kb", c.Fluentd.SyslogMaxMessageKB, MaxSyslogMessageKB),
		atLeast("lock-failed-attempts-count", c.Lock.FailedAttempts, 1),
		atLeast("lock-max-per-period", c.Lock.MaxLocks, 0),
		atLeast("dead-letter-max-mb", c.DeadLetterMaxMB, 1),
		positive("timeout", c.Timeout),
		positive("window-size", c.WindowSize),
		positive("ready-grace", c.ReadyGrace),
		notNegative("teleport-refresh-interval", c.Teleport.RefreshInterval, "use a duration such as 1m"),
		notNegative("lock-period", c.Lock.Period, "use a duration such as 1m"),
		notNegative("lock-for", c.Lock.For, "use a duration such as 30m, or 0 for locks that never expire"),
		notNegative("late-event-lag", c.LateEventLag, "use a duration such as 5m, or 0 to turn the trailing cursor off"),
	}
	if c.Teleport.RefreshEnabled {
		checks = append(checks, positive("teleport-refresh-interval", c.Teleport.RefreshInterval))
	}
	if c.Lock.Enabled {
		checks = append(checks, positive("lock-period", c.Lock.Period))
	}
	switch c.ExportMode {
	case "", ExportAuto, ExportExport, ExportSearch:
	default:
		checks = append(checks, r.fail("export-mode", "is not a mode", "use auto, export or search"))
	}
	return firstErr(checks)
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkTeleport wants an identity file or a certificate, key and CA: the two
// are alternatives, and mixing them would leave it unclear which one is used.
func (r *resolver) checkTeleport(c *Config) error {
	t := c.Teleport
	files := []struct{ flag, path string }{{"teleport-cert", t.Cert}, {"teleport-key", t.Key}, {"teleport-ca", t.CA}}
	var set, missing []string
	for _, f := range files {
		if f.path != "" {
			set = append(set, "--"+f.flag)
		} else {
			missing = append(missing, "--"+f.flag)
		}
	}
	trio := "--teleport-cert, --teleport-key and --teleport-ca"
	switch {
	case t.Identity != "" && len(set) > 0:
		return r.fail("teleport-identity", "cannot be combined with "+join(set),
			"use either the identity file or "+trio)
	case t.Identity == "" && len(set) == 0:
		return &Error{Option: "--teleport-identity", Problem: "no Teleport credentials are set",
			Fix: "set " + optionByFlag("teleport-identity").ways() + ", or all of " + trio}
	case t.Identity == "" && len(missing) > 0:
		return r.fail(strings.TrimPrefix(set[0], "--"), "also needs "+join(missing)+", which "+are(missing)+" not set",
			"set "+join(missing)+", or use --teleport-identity instead")
	}
	if t.RefreshEnabled && t.Identity == "" {
		return r.fail("teleport-refresh-enabled", "reloads the identity file, but --teleport-identity is not set",
			"set --teleport-identity, or disable the refresh")
	}

	if t.Identity != "" {
		if _, err := r.readFile("teleport-identity"); err != nil {
			return err
		}
		id, err := identityfile.ReadFile(t.Identity)
		if err != nil {
			return r.fail("teleport-identity", "not a usable identity file: "+err.Error(),
				"write it again with tctl auth sign --format=file")
		}
		if _, err := id.TLSConfig(); err != nil {
			return r.fail("teleport-identity", "the identity file has no usable TLS credentials: "+err.Error(),
				"write it again with tctl auth sign --format=file")
		}
		return nil
	}
	if err := r.checkKeyPair("teleport-cert", "teleport-key"); err != nil {
		return err
	}
	return r.checkCA("teleport-ca")
}

func (r *resolver) checkFluentd(c *Config) error {
	f := c.Fluentd
	// A dry run does not connect, but files that are given are checked all
	// the same: a dry run is how a configuration gets tried out.
	if f.Cert != "" || f.Key != "" {
		if f.Cert == "" || f.Key == "" {
			set, missing := "fluentd-cert", "fluentd-key"
			if f.Cert == "" {
				set, missing = missing, set
			}
			return &Error{Option: "--" + missing, Problem: "required with --" + set,
				Fix: "set " + optionByFlag(missing).ways()}
		}
		if err := r.checkKeyPair("fluentd-cert", "fluentd-key"); err != nil {
			return err
		}
	}
	if f.CA != "" {
		if err := r.checkCA("fluentd-ca"); err != nil {
			return err
		}
	}
	if err := r.checkForward(c); err != nil {
		return err
	}
	return r.checkSyslog(c)
}

// checkLogFormat wants auto, text or json.
func (r *resolver) checkLogFormat(c *Config) error {
	switch c.LogFormat = strings.ToLower(strings.TrimSpace(c.LogFormat)); c.LogFormat {
	case "auto", "text", "json":
		return nil
	}
	return r.fail("log-format", "unknown log format", "use auto (text on a terminal, JSON otherwise), text or json")
}

// checkForward checks the options of the forward protocol, and reads the
// shared key from its file.
func (r *resolver) checkForward(c *Config) error {
	f := &c.Fluentd
	onlyForward := func(flag string) error {
		if r.replay {
			return nil
		}
		return r.fail(flag, "applies to forward:// Fluentd URLs only, and neither --fluentd-url nor --fluentd-session-url is one",
			"drop it, or use forward:// URLs to Fluentd's in_forward")
	}
	if _, set := r.got["fluentd-max-message-kb"]; set && !f.UsesForward() {
		return onlyForward("fluentd-max-message-kb")
	}
	switch strings.ToLower(f.Compress) {
	case "", "none":
		f.Compress = ""
	case "gzip":
		f.Compress = "gzip"
		if !f.UsesForward() {
			return onlyForward("fluentd-compress")
		}
	default:
		return r.fail("fluentd-compress", "unknown compression", "use none or gzip")
	}
	if f.SharedKeyFile != "" {
		if f.SharedKey != "" {
			return r.fail("fluentd-shared-key-file", "given with the shared key itself (FDFWD_FLUENTD_SHARED_KEY or forward.fluentd.shared-key)", "give the key one way only")
		}
		raw, err := os.ReadFile(f.SharedKeyFile)
		if err != nil {
			return r.fail("fluentd-shared-key-file", "cannot be read: "+err.Error(), "check the path and that the daemon's user may read it")
		}
		if f.SharedKey = strings.TrimRight(string(raw), "\r\n"); f.SharedKey == "" {
			return r.fail("fluentd-shared-key-file", "is empty", "write in_forward's shared_key into it")
		}
	}
	for _, flag := range []string{"fluentd-shared-key", "fluentd-shared-key-file"} {
		if _, set := r.got[flag]; set && !f.UsesForward() {
			return onlyForward(flag)
		}
	}
	return nil
}

// checkStorage only looks: a missing directory is fine, it is created when
// the daemon starts, but a file in its place will never work.
func (r *resolver) checkStorage(c *Config) error {
	info, err := os.Stat(c.Storage)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return r.fail("storage", err.Error(), "check the path and its permissions")
	case !info.IsDir():
		return r.fail("storage", "exists and is not a directory", "point it to a directory, or to a path that does not exist yet")
	}
	return nil
}

// readFile reads the file an option names.
func (r *resolver) readFile(flag string) ([]byte, error) {
	data, err := os.ReadFile(r.got[flag].text)
	if err != nil {
		return nil, r.fail(flag, "cannot read: "+err.Error(), "check the path and that it is readable by this user")
	}
	return data, nil
}

func (r *resolver) checkKeyPair(certFlag, keyFlag string) error {
	certPEM, err := r.readFile(certFlag)
	if err != nil {
		return err
	}
	keyPEM, err := r.readFile(keyFlag)
	if err != nil {
		return err
	}
	if _, err := parseCertificates(certPEM); err != nil {
		return r.fail(certFlag, err.Error(), "give a PEM certificate file")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return r.fail(keyFlag, "does not load with --"+certFlag+" "+r.got[certFlag].text+": "+err.Error(),
			"give the unencrypted PEM private key of that certificate")
	}
	return nil
}

func (r *resolver) checkCA(flag string) error {
	data, err := r.readFile(flag)
	if err != nil {
		return err
	}
	if _, err := parseCertificates(data); err != nil {
		return r.fail(flag, err.Error(), "give the PEM certificate of the certificate authority")
	}
	return nil
}

// parseCertificates returns the certificates of a PEM file, insisting on at
// least one: x509.CertPool.AppendCertsFromPEM would skip bad ones silently.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("bad certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in the file")
	}
	return certs, nil
}

// join writes a list the way a sentence does: "a", "a and b", "a, b and c".
func join(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func are(items []string) string {
	if len(items) == 1 {
		return "is"
	}
	return "are"
}

// CheckFluentdURL returns what is wrong with a Fluentd URL of one of the
// schemes, "" if nothing. Every scheme is over TLS: https (in_http) and
// forward (in_forward); plain http:// or tcp:// are refused.
func CheckFluentdURL(s string, schemes []string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL"
	case !slices.Contains(schemes, u.Scheme) || u.Host == "":
		return "not " + schemeList(schemes) + " URL with a host (the receiver is reached over mTLS)"
	case u.User != nil:
		return "holds credentials (user:password@), which would end up in logs and dead letters; the receiver authenticates the daemon by its client certificate (and, over forward, the shared key)"
	case strings.Trim(u.Path, "/") == "" && !IsSyslog(s):
		return "has no path, which Fluentd needs as the tag"
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "has a query or a fragment (the tag is the path, and a session's id is appended to the session URL)"
	case u.Port() != "":
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			return "has an invalid port"
		}
	}
	return ""
}

// schemeList is "an https://", "an https:// or a forward://", or "an
// https://, a forward:// or a ...".
func schemeList(schemes []string) string {
	parts := make([]string, len(schemes))
	for i, s := range schemes {
		article := "a "
		if s == "https" {
			article = "an "
		}
		parts[i] = article + s + "://"
	}
	if len(parts) < 3 {
		return strings.Join(parts, " or ")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}
