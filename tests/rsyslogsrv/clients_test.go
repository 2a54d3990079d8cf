package rsyslogsrv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// ioTimeout bounds every dial, handshake and read of the test clients.
const ioTimeout = 10 * time.Second

// clientTLS trusts the Fluentd CA of pki and presents pair, none if nil:
// always, even when the server asks for certificates of other CAs (Go's
// client would send none, and a test of a certificate of another CA would
// test none).
func clientTLS(t *testing.T, pki *testpki.Bundle, pair *certs.Pair) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(pki.FluentdCA.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if pair != nil {
		cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
		require.NoError(t, err)
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg
}

// dialTLS connects and shakes hands; the connection is closed with the
// test. With TLS 1.3 a client's handshake ends before the server has
// judged the client's certificate: a refusal shows on the first read.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, ioTimeout)
	require.NoError(t, err)
	c := tls.Client(raw, cfg)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	return c, c.HandshakeContext(ctx)
}

// octets frames msgs as RFC 5425 does: MSG-LEN SP SYSLOG-MSG.
func octets(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		b = fmt.Appendf(b, "%d %s", len(m), m)
	}
	return b
}

// sendSyslog sends msgs on one connection and closes it.
func sendSyslog(t *testing.T, addr string, cfg *tls.Config, msgs ...string) {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	require.NoError(t, err)
	c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err = c.Write(octets(msgs...))
	require.NoError(t, err)
	require.NoError(t, c.Close())
}

// requireClosed checks that the peer ended c: a read fails at once, and
// not for want of data.
func requireClosed(t *testing.T, c *tls.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	n, err := c.Read(make([]byte, 1))
	require.Error(t, err, "the server answered %d bytes", n)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the connection open: %v", err)
}

// relpClient is the client side of a RELP session, written from the
// specification, frame by frame.
type relpClient struct {
	c *tls.Conn
	r *bufio.Reader
}

func dialRELP(t *testing.T, addr string, cfg *tls.Config) *relpClient {
	t.Helper()
	c, err := dialTLS(t, addr, cfg)
	require.NoError(t, err)
	return &relpClient{c: c, r: bufio.NewReader(c)}
}

// send writes frames in one write: several syslog frames are a window,
// in flight together.
func (rc *relpClient) send(t *testing.T, frames ...frame) {
	t.Helper()
	var b []byte
	for _, f := range frames {
		b = appendFrame(b, f)
	}
	rc.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := rc.c.Write(b)
	require.NoError(t, err)
}

func (rc *relpClient) recv(t *testing.T) frame {
	t.Helper()
	f, err := rc.read()
	require.NoError(t, err)
	return f
}

func (rc *relpClient) read() (frame, error) {
	rc.c.SetReadDeadline(time.Now().Add(ioTimeout))
	return readFrame(rc.r, MaxData)
}

const clientOffers = "relp_version=0\nrelp_software=rsyslogsrv-test\ncommands=syslog"

// open opens the session and returns the server's offers.
func (rc *relpClient) open(t *testing.T) string {
	t.Helper()
	rc.send(t, frame{txnr: 1, cmd: "open", data: []byte(clientOffers)})
	rsp := rc.recv(t)
	require.Equal(t, 1, rsp.txnr, rsp.String())
	require.Equal(t, "rsp", rsp.cmd)
	offers, ok := strings.CutPrefix(string(rsp.data), "200 OK\n")
	require.True(t, ok, "open answered %s", rsp)
	return offers
}

// requireEnd checks that the server ended the session: its stream ends
// with no other frame.
func (rc *relpClient) requireEnd(t *testing.T) {
	t.Helper()
	f, err := rc.read()
	require.Error(t, err, "a frame after the end: %s", f)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server kept the session open: %v", err)
}

// awaitLog waits until rsyslogd's log has want.
func awaitLog(t *testing.T, s *Server, want string) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		log, err := s.Log()
		require.NoError(t, err)
		if strings.Contains(log, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd's log has no %q:\n%s", want, log)
		}
		time.Sleep(pollInterval)
	}
}

// start runs rsyslogd with the Fluentd credentials of a fresh bundle.
func start(t *testing.T, o Options) (*Server, *testpki.Bundle) {
	t.Helper()
	pki := testpki.New(t)
	opts := PKIOptions(pki)
	opts.MaxMessageSize, opts.DiskQueue = o.MaxMessageSize, o.DiskQueue
	return Start(t, opts), pki
}

func mustParse(t *testing.T, line string) Message {
	t.Helper()
	m, err := Parse(line)
	require.NoError(t, err)
	return m
}
