package rsyslogsrv

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func startScripted(t *testing.T) (*ScriptedRELP, *testpki.Bundle) {
	t.Helper()
	pki := testpki.New(t)
	return StartScriptedRELP(t, pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)), pki
}

func TestScriptedRELPAnswersAsTheTestSets(t *testing.T) {
	s, pki := startScripted(t)
	require.Equal(t, "relp+tls://"+s.Addr(), s.URL())
	require.True(t, strings.HasPrefix(s.Addr(), "127.0.0.1:"))
	c := dialRELP(t, s.Addr(), clientTLS(t, pki, pki.FluentdClient))
	require.Contains(t, strings.Split(c.open(t), "\n"), "commands=syslog")

	c.send(t, frame{txnr: 2, cmd: "syslog", data: []byte("a")})
	require.Equal(t, `2 rsp "200 OK"`, c.recv(t).String())
	s.SetAnswer(500, "busy")
	c.send(t, frame{txnr: 3, cmd: "syslog", data: []byte("b")}, frame{txnr: 4, cmd: "syslog", data: []byte("c")})
	require.Equal(t, `3 rsp "500 busy"`, c.recv(t).String())
	require.Equal(t, `4 rsp "500 busy"`, c.recv(t).String())
	s.SetAnswer(200, "OK")
	c.send(t, frame{txnr: 5, cmd: "syslog", data: []byte(fullMsg)})
	require.Equal(t, `5 rsp "200 OK"`, c.recv(t).String())

	// As librelp: close is answered without data, then serverclose.
	c.send(t, frame{txnr: 6, cmd: "close"})
	require.Equal(t, `6 rsp ""`, c.recv(t).String())
	require.Equal(t, serverclose.String(), c.recv(t).String())
	c.requireEnd(t)

	require.Equal(t, []string{"a", fullMsg}, s.Messages())
	require.Equal(t, 2, s.Refused())
	require.Equal(t, 1, s.Opens())
	require.NoError(t, s.Err())
}

func TestScriptedRELPRefusesClientsWithoutAValidCertificate(t *testing.T) {
	s, pki := startScripted(t)
	other, err := certs.NewCA("Unrelated test CA", certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	otherClient, err := certs.IssueClient(other, "intruder", certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	for i, cfg := range []*tls.Config{clientTLS(t, pki, nil), clientTLS(t, pki, otherClient)} {
		c, err := dialTLS(t, s.Addr(), cfg)
		if err == nil { // TLS 1.3: the refusal comes after the handshake
			c.SetWriteDeadline(time.Now().Add(ioTimeout))
			c.Write(appendFrame(nil, frame{txnr: 1, cmd: "open", data: []byte(clientOffers)}))
			requireClosed(t, c)
		}
		require.Eventually(t, func() bool { return s.HandshakeFailures() == i+1 }, ioTimeout, pollInterval)
	}
	require.Zero(t, s.Opens())
	require.NoError(t, s.Err())
}

func TestScriptedRELPEndsSessionsThatBreakTheProtocol(t *testing.T) {
	s, pki := startScripted(t)
	cfg := clientTLS(t, pki, pki.FluentdClient)
	c := dialRELP(t, s.Addr(), cfg)
	c.send(t, frame{txnr: 1, cmd: "syslog", data: []byte("before open")})
	require.Equal(t, `1 rsp "500 session not opened"`, c.recv(t).String())
	c.requireEnd(t)
	require.ErrorContains(t, s.Err(), `"syslog" before open`)
	require.Zero(t, s.Opens())

	// A frame larger than the bound is not read, whatever it claims.
	s, pki = startScripted(t)
	c = dialRELP(t, s.Addr(), clientTLS(t, pki, pki.FluentdClient))
	c.open(t)
	c.c.Write([]byte("2 syslog 999999999 x"))
	c.requireEnd(t)
	require.Eventually(t, func() bool { return s.Err() != nil }, ioTimeout, pollInterval)
	require.ErrorContains(t, s.Err(), "DATALEN 999999999 is more than")
	require.ErrorIs(t, s.Err(), errFrame)
	require.Empty(t, s.Messages())
}

func TestScriptedRELPCloseSendsServerclose(t *testing.T) {
	s, pki := startScripted(t)
	c := dialRELP(t, s.Addr(), clientTLS(t, pki, pki.FluentdClient))
	c.open(t)
	s.Close()
	require.Equal(t, serverclose.String(), c.recv(t).String())
	c.requireEnd(t)
	s.Close()
}
