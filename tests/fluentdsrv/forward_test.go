package fluentdsrv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	"github.com/stretchr/testify/require"
	"github.com/tinylib/msgp/msgp"

	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// The forward listener takes the two modes the daemon never sends,
// Message and Forward, with integer seconds and EventTime, and acks each
// chunk; without a client certificate the TLS handshake fails.
func TestForwardListenerTakesEveryMode(t *testing.T) {
	pki := testpki.New(t)
	r, err := Start(Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)})
	require.NoError(t, err)
	defer r.Close()
	client := tls.Certificate{Certificate: [][]byte{pki.FluentdClient.Cert.Raw}, PrivateKey: pki.FluentdClient.Key}
	roots := x509.NewCertPool()
	roots.AddCert(pki.FluentdCA.Cert)
	addr := r.ForwardURL()[len("forward://"):]
	dial := func(certs []tls.Certificate) (*tls.Conn, error) {
		return tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: certs, ServerName: "localhost", MaxVersion: tls.VersionTLS12})
	}
	c, err := dial([]tls.Certificate{client})
	require.NoError(t, err)
	defer c.Close()
	w, rd := msgp.NewWriter(c), msgp.NewReader(c)
	ack := func(chunk string) {
		t.Helper()
		require.NoError(t, w.Flush())
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var a protocol.AckMessage
		require.NoError(t, a.DecodeMsg(rd))
		require.Equal(t, chunk, a.Ack)
	}

	msg := protocol.NewMessage("a.tag", map[string]any{"uid": "m1", "n": 1})
	chunk, err := msg.Chunk()
	require.NoError(t, err)
	require.NoError(t, msg.EncodeMsg(w))
	ack(chunk)

	at := time.Date(2026, 11, 3, 10, 0, 0, 5, time.UTC)
	fwd := protocol.NewForwardMessage("b.tag", protocol.EntryList{
		{Timestamp: protocol.EventTime{Time: at}, Record: map[string]any{"uid": "f1"}},
		{Timestamp: protocol.EventTime{Time: at}, Record: map[string]any{"uid": "f2"}},
	})
	chunk, err = fwd.Chunk()
	require.NoError(t, err)
	require.NoError(t, fwd.EncodeMsg(w))
	ack(chunk)

	require.Equal(t, map[string]int{"message": 1, "forward": 1}, r.ForwardMessages())
	var rec map[string]any
	require.NoError(t, json.Unmarshal(r.Records("a.tag")[0], &rec))
	require.Equal(t, map[string]any{"uid": "m1", "n": float64(1)}, rec)
	require.Len(t, r.Records("b.tag"), 2)
	require.Equal(t, at, r.EventTimes("b.tag")[1].UTC())
	require.NoError(t, r.Err())

	if c2, err := dial(nil); err == nil {
		_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c2.Read(make([]byte, 1))
		require.Error(t, err, "no client certificate, no session")
		c2.Close()
	}
}

// The handshake's faults: a late HELO, a HELO with keepalive false and
// the connection closed after the ack, a PONG that echoes the PING.
func TestForwardListenerFaults(t *testing.T) {
	pki := testpki.New(t)
	r, err := Start(Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA), SharedKey: []byte("k")})
	require.NoError(t, err)
	defer r.Close()
	client := tls.Certificate{Certificate: [][]byte{pki.FluentdClient.Cert.Raw}, PrivateKey: pki.FluentdClient.Key}
	roots := x509.NewCertPool()
	roots.AddCert(pki.FluentdCA.Cert)
	const delay = 150 * time.Millisecond
	r.SetForwardFaults(ForwardFaults{HeloDelay: delay, NoKeepalive: true, EchoPong: true})

	c, err := tls.Dial("tcp", r.ForwardURL()[len("forward://"):], &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{client}, ServerName: "localhost"})
	require.NoError(t, err)
	defer c.Close()
	start := time.Now() // the TLS handshake is done: the HELO is what waits
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	w, rd := msgp.NewWriter(c), msgp.NewReader(c)
	var helo protocol.Helo
	require.NoError(t, helo.DecodeMsg(rd))
	// The server's delay starts as its side of the TLS handshake ends, a
	// little before the client's.
	require.GreaterOrEqual(t, time.Since(start), delay/2, "the HELO waited, not the dial")
	require.False(t, helo.Options.Keepalive)

	ping, err := protocol.NewPing("client", []byte("not the key"), []byte("salt"), helo.Options.Nonce)
	require.NoError(t, err)
	require.NoError(t, ping.EncodeMsg(w))
	require.NoError(t, w.Flush())
	var pong protocol.Pong
	require.NoError(t, pong.DecodeMsg(rd))
	require.Equal(t, protocol.Pong{MessageType: protocol.MsgTypePong, AuthResult: true, ServerHostname: "client", SharedKeyHexDigest: ping.SharedKeyHexDigest}, pong)

	msg := protocol.NewMessage("a.tag", map[string]any{"uid": "m1"})
	chunk, err := msg.Chunk()
	require.NoError(t, err)
	require.NoError(t, msg.EncodeMsg(w))
	require.NoError(t, w.Flush())
	var a protocol.AckMessage
	require.NoError(t, a.DecodeMsg(rd))
	require.Equal(t, chunk, a.Ack)
	require.Zero(t, rd.Buffered())
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed after the ack")
	require.Equal(t, 1, r.ForwardHandshakes())
}
