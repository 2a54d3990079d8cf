package configure

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fdfwd/teleport-event-handler/config"
)

// The syslog variant: a syslog+tls:// or relp+tls:// URL writes, in place
// of fluent.conf, rsyslog's side of the connection.
const (
	// RsyslogConf is rsyslog's input, with mTLS, and a ruleset that writes
	// audit events and session recordings to files in RsyslogLogDir.
	RsyslogConf = "rsyslog-teleport.conf"
	// RsyslogLogDir is where RsyslogConf writes the events: the usual
	// place of a system's logs, created by rsyslog.
	RsyslogLogDir = "/var/log/teleport-event-handler"
	// rsyslogMaxMessage is rsyslog's maxMessageSize: its default, 8k, is
	// the daemon's default bound too, and room above it lets that bound
	// be raised for larger events without touching rsyslog again.
	rsyslogMaxMessage = "64k"
)

// sdID is the SD-ID of the structured data of the daemon's messages, on
// which RsyslogConf routes: one constant, so that it follows the syslog
// transport's in one place. It is 32473, the enterprise number IANA
// reserves for documentation (RFC 5612), until one is registered.
// rsyslog's mmpstrucdata lower-cases SD-IDs and names, so it must be
// lower-case.
const sdID = "teleport@32473"

// The URL schemes of the receivers.
const (
	schemeHTTPS     = "https"
	schemeForward   = "forward"
	schemeSyslogTLS = config.SyslogTLSScheme
	schemeRELPTLS   = config.SyslogRELPScheme
)

// defaultPorts are the ports of URLs that give none, as the transports
// default them. 6514 is syslog over TLS's (RFC 5425). RELP has no port
// assigned: 2514 is the one of rsyslog's imrelp and omrelp reference
// (input(type="imrelp" port="2514")), where some of its TLS examples use
// 20514, so that an rsyslog set up from its reference pages matches.
var defaultPorts = map[string]int{schemeHTTPS: 443, schemeForward: 24224, schemeSyslogTLS: 6514, schemeRELPTLS: 2514}

// isSyslog reports whether a URL is one of rsyslog's schemes.
func isSyslog(s string) bool {
	sch := scheme(s)
	return sch == schemeSyslogTLS || sch == schemeRELPTLS
}

// Syslog reports whether configure writes the syslog variant:
// RsyslogConf, an unencrypted server key, no passphrase.
func (c *Options) Syslog() bool { return isSyslog(c.FluentdURL) }

// RELP reports whether the syslog variant is RELP's (imrelp) rather than
// plain syslog over TLS (imtcp).
func (c *Options) RELP() bool { return scheme(c.FluentdURL) == schemeRELPTLS }

// receiverConf is the name of the receiver's configuration that
// configure writes for c.
func receiverConf(c *Options) string {
	if c.Syslog() {
		return RsyslogConf
	}
	return FluentConf
}

// checkURL checks a receiver URL as the daemon does: a syslog URL needs no
// path; a Fluentd URL needs one (the tag).
func checkURL(s string) string { return config.CheckFluentdURL(s, config.Schemes) }

// rsyslogString quotes s as a string of rsyslog's configuration (a
// RainerScript constant): in double quotes, with \ and " escaped, which
// rsyslog 8.2302 accepts in object parameters. A $ is refused: rsyslog's
// documentation asks for \$ in double quotes, which 8.2302 refuses, and
// its object parameters take no single-quoted strings.
func rsyslogString(s string) (string, error) {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("a control character cannot be written in %s: %q", RsyslogConf, s)
	}
	if strings.Contains(s, "$") {
		return "", fmt.Errorf("a $ cannot be written in %s in a way every rsyslog reads: %q; choose an OUT_DIR without $", RsyslogConf, s)
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`, nil
}

// receiverLines are the summary's lines of the receiver's files.
func receiverLines(c *Options, sans []string) [][2]string {
	if !c.Syslog() {
		input := "Fluentd's HTTP input, mTLS required"
		if c.Forward() {
			input = "Fluentd's forward input, mTLS and a shared key required"
		}
		return [][2]string{
			{"server.crt, server.key", "Fluentd's, for " + strings.Join(sans, ", ") + "; key encrypted"},
			{FluentConf, input},
		}
	}
	input := "rsyslog's syslog-over-TLS input (imtcp, RFC 5425), mTLS required"
	if c.RELP() {
		input = "rsyslog's RELP input over TLS (imrelp), mTLS required"
	}
	return [][2]string{
		// rsyslog's gtls driver and librelp take no passphrase.
		{"server.crt, server.key", "rsyslog's, for " + strings.Join(sans, ", ") + "; key not encrypted (rsyslog reads none)"},
		{RsyslogConf, input + "; events to " + RsyslogLogDir},
	}
}

// receiverStep is the next step that starts the receiver.
func receiverStep(c *Options, p func(string) string) string {
	if !c.Syslog() {
		return "Start Fluentd, after replacing the stdout outputs of fluent.conf with yours:\n       fluentd -c " + p(FluentConf)
	}
	// A second rsyslogd beside the system's needs a pid file of its own.
	return fmt.Sprintf(`Check %[1]s with rsyslog, then run it (or copy it to /etc/rsyslog.d/,
     merging its global() and module() with rsyslog.conf's if it sets them):
       rsyslogd -N1 -f %[2]s
       rsyslogd -n -f %[2]s -i /run/rsyslogd-teleport.pid`, RsyslogConf, p(RsyslogConf))
}

// withReceiverConf is files with FluentConf replaced by RsyslogConf for
// the syslog variant.
func withReceiverConf(c *Options, files []string) []string {
	if !c.Syslog() {
		return files
	}
	out := slices.Clone(files)
	out[slices.Index(out, FluentConf)] = RsyslogConf
	return out
}
