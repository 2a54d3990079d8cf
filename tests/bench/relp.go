package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fdfwd/teleport-event-handler/tests/rsyslogsrv"
)

// relpRuns measure the daemon into a real rsyslogd over RELP (relp+tls://,
// a window of --fluentd-batch messages per connection, each acknowledged),
// read with search and with the export API. rsyslog writes each message
// to a file; its CPU is the receiver's.
func relpRuns(o *options, rep *report, tp *child, total int) error {
	for _, run := range []struct {
		key, name string
		flags     []string
	}{
		{"relp", "daemon, relp+tls into rsyslog", nil},
		{"relp-export", "daemon, relp+tls into rsyslog, export API", exportFlags()},
	} {
		if !o.runs[run.key] {
			continue
		}
		flags := append([]string{"--syslog-max-message-kb", "64"}, run.flags...)
		if err := addDaemonRun(o, rep, tp, rsyslogsrv.RELP, run.name, total, flags, "", 0); err != nil {
			return err
		}
	}
	return nil
}

// receiver is where a daemon run sends: the Fluentd-compatible helper, or
// a real rsyslogd for RELP.
type receiver interface {
	url(scheme string) string
	pid() int
	// tally is what arrived: records, distinct events, requests and TLS
	// handshakes (the last two 0 where the receiver does not count them).
	tally() (count, unique, requests, handshakes int, err error)
	stop()
}

func startReceiver(o *options, scheme string) (receiver, error) {
	if scheme != rsyslogsrv.RELP {
		c, err := startChild(o, "fluentd")
		return fluentdReceiver{c}, err
	}
	dir := filepath.Join(o.out, "rsyslog")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	opts := rsyslogsrv.PKIOptions(pkiFiles(o.pki))
	opts.MaxMessageSize = 64 << 10
	srv, err := rsyslogsrv.Launch(dir, opts)
	return rsyslogReceiver{srv}, err
}

type fluentdReceiver struct{ c *child }

func (f fluentdReceiver) url(scheme string) string { return receiverURL(f.c, scheme) }
func (f fluentdReceiver) pid() int                 { return f.c.cmd.Process.Pid }
func (f fluentdReceiver) stop()                    { f.c.stop() }

func (f fluentdReceiver) tally() (count, unique, requests, handshakes int, err error) {
	stats, err := f.c.ask("stats")
	if err != nil {
		return 0, 0, 0, 0, err
	}
	_, err = fmt.Sscanf(stats, "%d %d %d %d", &count, &unique, &requests, &handshakes)
	return count, unique, requests, handshakes, err
}

type rsyslogReceiver struct{ s *rsyslogsrv.Server }

func (r rsyslogReceiver) url(string) string { return r.s.RELPURL() }
func (r rsyslogReceiver) pid() int          { return r.s.Pid() }
func (r rsyslogReceiver) stop()             { r.s.Stop() }

// tally counts the messages rsyslog wrote, an event being its uid (audit)
// or its session and index (recordings), from the structured data.
func (r rsyslogReceiver) tally() (count, unique, requests, handshakes int, err error) {
	msgs, err := r.s.Messages(rsyslogsrv.RELP)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		sd := m.SD["teleport@32473"]
		key := sd["uid"]
		if sid, ok := sd["sid"]; ok {
			key = sid + "/" + sd["ei"]
		}
		seen[key] = true
	}
	return len(msgs), len(seen), 0, 0, nil
}
