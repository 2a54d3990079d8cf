package wire_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/forward"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/jsonhttp"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// credentialFiles are the daemon's --fluentd-ca, --fluentd-cert and
// --fluentd-key, written where a test can renew them.
type credentialFiles struct{ ca, cert, key string }

func newCredentialFiles(t *testing.T, ca, client *certs.Pair) credentialFiles {
	dir := t.TempDir()
	f := credentialFiles{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")}
	f.write(t, client, ca)
	return f
}

func (f credentialFiles) write(t *testing.T, client *certs.Pair, cas ...*certs.Pair) {
	var bundle []byte
	for _, ca := range cas {
		bundle = append(bundle, ca.CertPEM...)
	}
	require.NoError(t, os.WriteFile(f.ca, bundle, 0o600))
	require.NoError(t, client.WriteFiles(f.cert, f.key))
}

// send posts one event on a fresh connection.
func send(creds *wire.Credentials, url string) wire.Result {
	h := jsonhttp.New(creds, 1)
	defer h.Close()
	return h.NewSender().Send(context.Background(), url, [][]byte{[]byte(`{"uid":"x"}`)})
}

// A renewed client certificate reaches new connections without a restart
// (the old one is refused by the receiver from then on), and a half-written
// renewal keeps the working one.
func TestClientCertificateIsReloaded(t *testing.T) {
	pki := testpki.New(t)
	files := newCredentialFiles(t, pki.FluentdCA, pki.FluentdClient)

	var refused atomic.Pointer[x509.Certificate]
	srvTLS := pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)
	srvTLS.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if r := refused.Load(); r != nil && string(raw[0]) == string(r.Raw) {
			return errors.New("revoked")
		}
		return nil
	}
	rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: srvTLS})
	require.NoError(t, err)
	defer rcv.Close()

	creds, err := wire.LoadCredentials(files.ca, files.cert, files.key)
	require.NoError(t, err)
	var reloads []error
	creds.OnReload = func(err error) {
		creds.Validity() // as the daemon does: the callback may use the credentials
		reloads = append(reloads, err)
	}
	url := rcv.URL() + "/test.log"
	require.Equal(t, wire.Success, send(creds, url).Class)
	require.Empty(t, reloads, "the files did not change")

	renewed, err := certs.IssueClient(pki.FluentdCA, testpki.TeleportUser, certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	refused.Store(pki.FluentdClient.Cert)
	files.write(t, renewed, pki.FluentdCA)
	require.Equal(t, wire.Success, send(creds, url).Class, "the renewed certificate is used")

	require.Len(t, reloads, 1)
	require.NoError(t, reloads[0])
	from, to := creds.Validity()
	require.True(t, to.Equal(renewed.Cert.NotAfter) && from.Equal(renewed.Cert.NotBefore), "the renewed certificate's validity")

	require.NoError(t, os.WriteFile(files.cert, []byte("-----BEGIN CERT"), 0o600))
	require.Equal(t, wire.Success, send(creds, url).Class, "a half-written renewal keeps the working certificate")
	require.Equal(t, wire.Success, send(creds, url).Class)
	require.Len(t, reloads, 2, "a content that does not load is reported once")
	require.ErrorContains(t, reloads[1], "--fluentd-cert")
	require.NoError(t, os.Remove(files.key))
	require.Equal(t, wire.Success, send(creds, url).Class)
	require.Len(t, reloads, 3, "nor is a file that cannot be read")
	require.ErrorContains(t, reloads[2], "read --fluentd-key")
}

// A new CA reaches new connections too, over HTTP, forward and the start's
// check, and the server's name is still checked against a CA that changed:
// a certificate the new CA issued for another name is refused at
// 127.0.0.1 (an IP address sends no server name, so a hand-made
// verification would have nothing to compare).
func TestCAIsReloadedAndTheServerNameStillChecked(t *testing.T) {
	old := testpki.New(t)
	renewed := testpki.New(t)
	files := newCredentialFiles(t, old.FluentdCA, old.FluentdClient)
	creds, err := wire.LoadCredentials(files.ca, files.cert, files.key)
	require.NoError(t, err)

	rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: renewed.ServerTLS(renewed.FluentdServer, renewed.FluentdCA)})
	require.NoError(t, err)
	defer rcv.Close()
	url := rcv.URL() + "/test.log"
	var tlsErr *wire.TLSError
	require.ErrorAs(t, wire.Check(context.Background(), url, creds), &tlsErr, "the old CA does not trust the renewed receiver")
	res := send(creds, url)
	require.Equal(t, wire.Retry, res.Class)
	require.Contains(t, res.Reason, "point --fluentd-ca at the CA", "a send says what the start's check says")

	files.write(t, renewed.FluentdClient, renewed.FluentdCA)
	require.NoError(t, wire.Check(context.Background(), url, creds))
	require.Equal(t, wire.Success, send(creds, url).Class)
	fwd := forward.New(creds, forward.Options{Hostname: "test"})
	sender := fwd.NewSender()
	defer sender.Close()
	require.Equal(t, wire.Success, sender.Send(context.Background(), rcv.ForwardURL()+"/test.log", [][]byte{[]byte(`{"uid":"y"}`)}).Class)
	require.Equal(t, 2, rcv.Count())

	elsewhere, err := certs.IssueServer(renewed.FluentdCA, "fluentd.elsewhere", []string{"fluentd.elsewhere"}, nil, certs.Options{})
	require.NoError(t, err)
	misnamed, err := fluentdsrv.Start(fluentdsrv.Config{TLS: renewed.ServerTLS(elsewhere, renewed.FluentdCA)})
	require.NoError(t, err)
	defer misnamed.Close()
	err = wire.Check(context.Background(), misnamed.URL()+"/test.log", creds)
	require.ErrorAs(t, err, &tlsErr)
	require.Contains(t, err.Error(), "127.0.0.1")
	require.Equal(t, wire.Retry, send(creds, misnamed.URL()+"/test.log").Class)
	require.Zero(t, misnamed.Count())
}
