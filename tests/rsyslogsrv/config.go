package rsyslogsrv

import (
	"fmt"
	"os"
	"strings"
)

// The configuration rsyslogd runs with. Nothing of the system's: no
// /etc/rsyslog.conf, no imuxsock or imklog, its own work directory and pid
// file. Global settings come first: maxMessageSize applies to the inputs
// loaded after it only.
//
// The template is %rawmsg%: the message as it came out of the framing, so
// that Parse checks the whole RFC 5424 message as the daemon sent it.
// rsyslog's own RFC 5424 parser is lenient (it takes an unescaped `"` or
// `]` in a parameter value) and its properties reformat (a nil MSG
// becomes "-", a fraction of more than 6 digits is garbled): a template
// of properties would hide what it should show.
const configText = `# Written by tests/rsyslogsrv for one test.
global(
  workDirectory={{work}}
{{maxMessageSize}}  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile={{ca}}
  defaultNetstreamDriverCertFile={{cert}}
  defaultNetstreamDriverKeyFile={{key}}
)

# Both inputs: a client certificate signed by the CA is required. imrelp
# with OpenSSL: with its default, GnuTLS, librelp 1.11's certvalid takes a
# certificate of any CA.
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="x509/certvalid")
module(load="imrelp" tls.tlslib="openssl")

template(name="teh_rawmsg" type="string" string="%rawmsg%\n")

ruleset(name="teh_syslog"{{queue syslog}}) {
  action(type="omfile" file={{out syslog}} template="teh_rawmsg")
}
ruleset(name="teh_relp"{{queue relp}}) {
  action(type="omfile" file={{out relp}} template="teh_rawmsg")
}

input(type="imtcp" address="127.0.0.1" port="{{port syslog}}" ruleset="teh_syslog")
input(type="imrelp" address="127.0.0.1" port="{{port relp}}" ruleset="teh_relp"
  tls="on" tls.authMode="certvalid"
  tls.caCert={{ca}} tls.myCert={{cert}} tls.myPrivKey={{key}})
`

// diskQueue is a ruleset's disk-assisted queue: in memory, spilling to
// files in the work directory when full, saved there on shutdown and read
// again at start. imrelp answers a frame once the message is in it.
const diskQueue = `
  queue.type="LinkedList" queue.filename="{{name}}" queue.saveOnShutdown="on"
  queue.maxDiskSpace="64m" queue.checkpointInterval="1" queue.syncQueueFiles="on"`

func (s *Server) configText() string {
	size := ""
	if s.opts.MaxMessageSize > 0 {
		size = fmt.Sprintf("  maxMessageSize=\"%d\"\n", s.opts.MaxMessageSize)
	}
	pairs := []string{
		"{{work}}", quote(s.workDir()),
		"{{maxMessageSize}}", size,
		"{{ca}}", quote(s.opts.CAFile),
		"{{cert}}", quote(s.opts.CertFile),
		"{{key}}", quote(s.opts.KeyFile),
	}
	for _, input := range []string{Syslog, RELP} {
		queue := ""
		if s.opts.DiskQueue {
			queue = strings.ReplaceAll(diskQueue, "{{name}}", "teh_"+input)
		}
		pairs = append(pairs,
			"{{queue "+input+"}}", queue,
			"{{out "+input+"}}", quote(s.out[input]),
			"{{port "+input+"}}", fmt.Sprint(s.ports[input]),
		)
	}
	return strings.NewReplacer(pairs...).Replace(configText)
}

func (s *Server) writeConfig() error {
	if err := os.WriteFile(s.conf, []byte(s.configText()), 0o600); err != nil {
		return fmt.Errorf("write the configuration: %w", err)
	}
	return nil
}

// quote is v as a RainerScript string.
func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}
