package configure_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
)

// A syslog URL needs no path (the transports ignore it), is its own
// session URL, and takes the port of its scheme by default.
func TestSyslogURLs(t *testing.T) {
	for url, port := range map[string]string{
		"syslog+tls://siem.example.com":          "6514",
		"relp+tls://siem.example.com":            "2514",
		"relp+tls://siem.example.com:20514/x/y":  "20514",
		"syslog+tls://10.0.0.7:6514/":            "6514",
		"syslog+tls://[2001:db8::1]:16514/audit": "16514",
	} {
		c := parse(t, nil, "--key-type", "ecdsa", "--fluentd-url", url, "out")
		require.Equal(t, url, c.FluentdURL)
		require.Equal(t, url, c.FluentdSessionURL, "one input serves both")
		require.True(t, c.Syslog())
		require.Equal(t, strings.HasPrefix(url, "relp+tls:"), c.RELP())
		dir := t.TempDir()
		_, err := configure.Run(parse(t, nil, "--key-type", "ecdsa", "--fluentd-url", url, dir), io.Discard)
		require.NoError(t, err)
		require.Contains(t, string(read(t, dir, configure.RsyslogConf)), `port="`+port+`"`, url)
	}
	c := parse(t, nil, "--fluentd-url", "syslog+tls://siem:6514", "--fluentd-session-url", "syslog+tls://siem/rec/", "out")
	require.Equal(t, "syslog+tls://siem/rec/", c.FluentdSessionURL, "no .<sid>.log is appended: a trailing / is no matter")

	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--fluentd-url", "syslog+tls://user:pw@siem"}, nil, "holds credentials"},
		{[]string{"--fluentd-url", "relp+tls://siem?tag=x"}, nil, "has a query or a fragment"},
		{[]string{"--fluentd-url", "relp+tls://siem:99999"}, nil, "has an invalid port"},
		{[]string{"--fluentd-url", "relp+tls:///path"}, nil, `invalid --fluentd-url "relp+tls:///path" (from the command line): not an https://, a forward://, a syslog+tls:// or a relp+tls:// URL with a host`},
		{[]string{"--fluentd-url", "syslog://siem:514"}, nil, "a relp+tls:// URL with a host"},
		{[]string{"--fluentd-url", "syslog+tls://siem", "--fluentd-session-url", "relp+tls://siem:6514"}, nil,
			"is not on the scheme, host and port of --fluentd-url syslog+tls://siem, and rsyslog-teleport.conf has one input"},
		{[]string{"--fluentd-url", "https://fluentd:8888/a", "--fluentd-session-url", "relp+tls://fluentd:8888"}, nil, "and fluent.conf has one input"},
		{[]string{"--fluentd-url", "relp+tls://siem"}, map[string]string{configure.PasswordEnv: "pw"},
			"FDFWD_PASSWORD \"(not shown)\" (from FDFWD_PASSWORD): is set, but rsyslog reads no encrypted keys"},
	} {
		_, err := resolve(append(tt.args, "out"), tt.env)
		var cerr *config.Error
		require.ErrorAs(t, err, &cerr, tt.args)
		require.Contains(t, err.Error(), tt.want, tt.args)
	}
}

// The syslog variant writes rsyslog-teleport.conf instead of fluent.conf,
// an unencrypted server key and no passphrase, and says so.
func TestWritesRsyslogConf(t *testing.T) {
	for _, url := range []string{"syslog+tls://siem.example.com:6514", "relp+tls://siem.example.com:2514/teleport"} {
		dir := t.TempDir()
		res, out := run(t, dir, "--fluentd-url", url, "teleport.example.com:443")
		require.False(t, res.PasswordGenerated)
		require.Empty(t, res.Password)
		require.Empty(t, res.SharedKey)
		require.NoFileExists(t, filepath.Join(dir, configure.FluentConf))
		info, err := os.Stat(filepath.Join(dir, configure.RsyslogConf))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
		_, err = certs.ParsePair(read(t, dir, "server.crt"), read(t, dir, "server.key"))
		require.NoError(t, err, "rsyslog reads no encrypted keys")

		conf := string(read(t, dir, configure.RsyslogConf))
		relp := strings.HasPrefix(url, "relp")
		require.Equal(t, relp, strings.Contains(conf, `input(type="imrelp"`), url)
		require.Equal(t, !relp, strings.Contains(conf, `input(type="imtcp"`), url)
		for _, want := range []string{`"` + filepath.Join(dir, "ca.crt") + `"`, `"` + filepath.Join(dir, "server.key") + `"`,
			`maxMessageSize="64k"`, `"%msg%\n"`, "exists($!rfc5424-sd!" + configure.SDID + "!sid)",
			`queue.saveOnShutdown="on"`, configure.RsyslogLogDir + "/audit.log", configure.RsyslogLogDir + "/sessions.log"} {
			require.Contains(t, conf, want, url)
		}
		require.Contains(t, out, "rsyslogd -N1 -f "+filepath.Join(dir, configure.RsyslogConf))
		require.Contains(t, out, "key not encrypted")
		require.NotContains(t, out, "fluent")

		toml := string(read(t, dir, configure.ConfigFile))
		require.Contains(t, toml, "url = \""+url+"\"")
		require.Contains(t, toml, "session-url = \""+url+"\"")
		require.NotContains(t, toml, "fluent.conf")
		writeIdentity(t, dir)
		inv, err := config.Resolve(map[string]string{"config": filepath.Join(dir, configure.ConfigFile)}, noEnv)
		require.NoError(t, err, "the daemon loads it as it is")
		require.Equal(t, url, inv.Config.Fluentd.URL)
		require.Equal(t, 64, inv.Config.Fluentd.SyslogMaxMessageKB, "in step with maxMessageSize")
		var values struct {
			Fluentd struct {
				URL        string `yaml:"url"`
				SessionURL string `yaml:"sessionUrl"`
			} `yaml:"fluentd"`
		}
		require.NoError(t, yaml.Unmarshal(read(t, dir, configure.ValuesFile), &values))
		require.Equal(t, url, values.Fluentd.URL)
		require.Equal(t, url, values.Fluentd.SessionURL)
		require.Contains(t, string(read(t, dir, configure.ValuesFile)), "rsyslog-teleport.conf")
	}

	// A $ in OUT_DIR cannot be quoted for every rsyslog: nothing is written.
	dir := filepath.Join(t.TempDir(), "a$b")
	_, err := configure.Run(parse(t, nil, "--key-type", "ecdsa", "--fluentd-url", "relp+tls://siem", dir), io.Discard)
	require.ErrorContains(t, err, "choose an OUT_DIR without $")
	require.NoDirExists(t, dir)
}

// rsyslogd is the rsyslogd to check the configuration with: the test is
// skipped without one, unless TEH_REQUIRE_RSYSLOG is set.
func rsyslogd(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("rsyslogd")
	if err != nil {
		path, err = exec.LookPath("/usr/sbin/rsyslogd")
	}
	if err != nil {
		if os.Getenv("TEH_REQUIRE_RSYSLOG") != "" {
			t.Fatalf("rsyslogd not found, and TEH_REQUIRE_RSYSLOG is set: %v", err)
		}
		t.Skip("rsyslogd not found (apt-get install rsyslog rsyslog-gnutls rsyslog-relp); set TEH_REQUIRE_RSYSLOG to fail instead")
	}
	return path
}

// checkConf runs rsyslog's own check of a configuration file.
func checkConf(t *testing.T, rsyslogd, file string) {
	t.Helper()
	out, err := exec.Command(rsyslogd, "-N1", "-f", file).CombinedOutput()
	require.NoError(t, err, "rsyslogd -N1 -f %s:\n%s", file, out)
	require.Contains(t, string(out), "End of config validation run")
}

// rsyslog accepts the configuration as written, for both schemes, from an
// OUT_DIR whose name needs quoting, and with the commented queues
// uncommented.
func TestRsyslogAcceptsTheConf(t *testing.T) {
	bin := rsyslogd(t)
	for _, url := range []string{"syslog+tls://localhost", "relp+tls://localhost"} {
		dir := filepath.Join(t.TempDir(), `we"i'rd\dir`)
		run(t, dir, "--fluentd-url", url)
		file := filepath.Join(dir, configure.RsyslogConf)
		checkConf(t, bin, file)

		conf := string(read(t, dir, configure.RsyslogConf))
		queued := strings.ReplaceAll(conf, "# queue.", "queue.")
		require.Equal(t, 3, strings.Count(queued, "\n        queue.")+strings.Count(queued, "\n               queue."))
		require.NoError(t, os.WriteFile(file, []byte(`global(workDirectory="`+t.TempDir()+"\")\n"+queued), 0o600))
		checkConf(t, bin, file)
	}
}

// receiver is an rsyslogd that runs rsyslog-teleport.conf, writing to dir
// rather than RsyslogLogDir.
type receiver struct {
	dir, port string
	client    *tls.Config // configure's client certificate
	roots     *x509.CertPool
}

func startRsyslog(t *testing.T, bin, scheme string, queued bool) *receiver {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	run(t, dir, "--fluentd-url", scheme+"://127.0.0.1:"+port)
	conf := strings.ReplaceAll(string(read(t, dir, configure.RsyslogConf)), `"`+configure.RsyslogLogDir+"/", `"`+dir+"/")
	if queued {
		conf = `global(workDirectory="` + dir + "\")\n" + strings.ReplaceAll(conf, "# queue.", "queue.")
	}
	file := filepath.Join(dir, "rsyslog-test.conf")
	require.NoError(t, os.WriteFile(file, []byte(conf), 0o600))

	var log bytes.Buffer
	cmd := exec.Command(bin, "-n", "-f", file, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &log, &log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("rsyslogd said:\n%s", log.String())
		}
	})
	// Up when the port takes connections.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "rsyslogd did not listen on %s: %v", port, err)
		time.Sleep(50 * time.Millisecond)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(read(t, dir, "ca.crt")))
	return &receiver{dir: dir, port: port, roots: roots,
		client: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "localhost"}}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// dial opens a TLS connection to the receiver with the given client
// configuration, every read and write bounded.
func (r *receiver) dial(t *testing.T, cfg *tls.Config) *tls.Conn {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+r.port, cfg)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitForLines waits until name in the receiver's directory holds want.
func (r *receiver) waitForLines(t *testing.T, name string, want []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(r.dir, name))
		got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if len(got) >= len(want) || time.Now().After(deadline) {
			require.Equal(t, want, got, name)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// message is one the daemon would send: APP-NAME teleport, MSGID the type,
// the structured data under configure.SDID, the event's JSON as MSG.
func message(typ, params, json string) string {
	return fmt.Sprintf("<109>1 2026-01-02T03:04:05.000006Z cluster teleport - %s [%s type=%q%s] %s",
		typ, configure.SDID, typ, params, json)
}

// The messages of one test: audit events (one with a cluster that looks
// like a sid parameter, escaped, and one over rsyslog's default 8k) and
// recordings, which go to sessions.log.
func testMessages() (msgs, audit, sessions []string) {
	big := `{"event":"exec","command":"` + strings.Repeat("x", 20000) + `"}`
	audit = []string{`{"event":"user.login","user":"alice","note":"é"}`, `{"event":"tricky"}`, big}
	sessions = []string{`{"event":"session.start","sid":"s-1","ei":0}`, `{"event":"print","sid":"s-1","ei":1}`}
	msgs = []string{
		message("user.login", ` uid="u-1" cluster="c" code="T1000I"`, audit[0]),
		message("session.start", ` uid="u-2" cluster="c" code="T2000I" sid="s-1" ei="0"`, sessions[0]),
		message("exec", ` uid="u-3" cluster="c\] sid=\"x"`, audit[1]),
		message("print", ` uid="u-4" cluster="c" sid="s-1" ei="1"`, sessions[1]),
		message("exec", ` uid="u-5" cluster="c"`, big),
	}
	return msgs, audit, sessions
}

// rsyslog, running rsyslog-teleport.conf for syslog+tls://, takes RFC 5425
// frames from configure's client certificate, writes each MSG on a line of
// the file of its kind, and refuses a client without a certificate or with
// one of another CA.
func TestRsyslogReceivesSyslogOverTLS(t *testing.T) {
	bin := rsyslogd(t)
	r := startRsyslog(t, bin, "syslog+tls", false)
	msgs, audit, sessions := testMessages()
	conn := r.dial(t, r.client)
	for _, m := range msgs {
		_, err := fmt.Fprintf(conn, "%d %s", len(m), m)
		require.NoError(t, err)
	}
	r.waitForLines(t, "audit.log", audit)
	r.waitForLines(t, "sessions.log", sessions)
	require.NoError(t, conn.Close())

	for name, cfg := range r.strangers(t) {
		conn := r.dial(t, cfg) // TLS 1.3: the server checks after the client's handshake
		m := message("user.login", ` uid="stranger"`, `{"event":"stranger"}`)
		_, _ = fmt.Fprintf(conn, "%d %s", len(m), m)
		_, err := conn.Read(make([]byte, 1))
		var ne net.Error
		require.Error(t, err, name)
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "%s: the connection was left open", name)
	}
	time.Sleep(200 * time.Millisecond)
	r.waitForLines(t, "audit.log", audit)
}

// rsyslog, running rsyslog-teleport.conf for relp+tls://, answers each
// message 200 OK once it has it, and refuses a client without a
// certificate or with one of another CA; also with the commented queues
// uncommented.
func TestRsyslogReceivesRELP(t *testing.T) {
	bin := rsyslogd(t)
	for _, queued := range []bool{false, true} {
		r := startRsyslog(t, bin, "relp+tls", queued)
		msgs, audit, sessions := testMessages()
		rc := newRELPClient(r.dial(t, r.client))
		require.NoError(t, rc.open(), "queued %v", queued)
		for _, m := range msgs {
			require.NoError(t, rc.send(m), "queued %v", queued)
		}
		r.waitForLines(t, "audit.log", audit)
		r.waitForLines(t, "sessions.log", sessions)

		for name, cfg := range r.strangers(t) {
			require.Error(t, newRELPClient(r.dial(t, cfg)).open(), name)
		}
	}
}

// strangers are client configurations rsyslog must refuse: without a
// certificate, and with one of another CA.
func (r *receiver) strangers(t *testing.T) map[string]*tls.Config {
	t.Helper()
	otherCA, err := certs.NewCA("other", certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	other, err := certs.IssueClient(otherCA, "teleport-event-handler", certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	pair, err := tls.X509KeyPair(other.CertPEM, other.KeyPEM)
	require.NoError(t, err)
	return map[string]*tls.Config{
		"no certificate": {RootCAs: r.roots, ServerName: "localhost"},
		// GetClientCertificate, not Certificates: Go's client sends no
		// certificate that the CAs the server names did not sign.
		"another CA's client": {GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil },
			RootCAs: r.roots, ServerName: "localhost"},
	}
}

// relpClient speaks the little of RELP the test needs: open, then one
// syslog command at a time, each answered before the next.
type relpClient struct {
	conn net.Conn
	in   *bufio.Reader
	txnr int
}

func newRELPClient(conn net.Conn) *relpClient {
	return &relpClient{conn: conn, in: bufio.NewReader(conn)}
}

func (c *relpClient) open() error {
	return c.command("open", "relp_version=0\nrelp_software=configure-test\ncommands=syslog")
}

func (c *relpClient) send(msg string) error { return c.command("syslog", msg) }

// command sends one frame (TXNR SP COMMAND SP DATALEN [SP DATA] LF) and
// reads its rsp, which must start 200.
func (c *relpClient) command(cmd, data string) error {
	c.txnr++
	frame := fmt.Sprintf("%d %s %d", c.txnr, cmd, len(data))
	if data != "" {
		frame += " " + data
	}
	if _, err := io.WriteString(c.conn, frame+"\n"); err != nil {
		return err
	}
	head, err := c.in.ReadString(' ')
	if err != nil {
		return err
	}
	if head != strconv.Itoa(c.txnr)+" " {
		return fmt.Errorf("answer to %d: %q", c.txnr, head)
	}
	if rsp, err := c.in.ReadString(' '); err != nil || rsp != "rsp " {
		return fmt.Errorf("not an rsp: %q, %v", rsp, err)
	}
	size, err := c.in.ReadString(' ')
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(size))
	if err != nil {
		return err
	}
	body := make([]byte, n+1) // and the trailing LF
	if _, err := io.ReadFull(c.in, body); err != nil {
		return err
	}
	if !bytes.HasPrefix(body, []byte("200 ")) {
		return fmt.Errorf("%s answered %q", cmd, body)
	}
	return nil
}
