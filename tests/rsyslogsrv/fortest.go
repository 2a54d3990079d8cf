package rsyslogsrv

import "github.com/fdfwd/teleport-event-handler/tests/testpki"

// PKIOptions are Options with the Fluentd side of a testpki bundle: its
// server certificate (valid for 127.0.0.1 and localhost), and its CA for
// the clients, whose certificate is FluentdClient. The daemon's syslog
// outputs take the same kind of credentials as its Fluentd output.
func PKIOptions(b *testpki.Bundle) Options {
	return Options{CAFile: b.FluentdCAFile, CertFile: b.FluentdServerCertFile, KeyFile: b.FluentdServerKeyFile}
}
