package fluentd_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/certs"
	"github.com/fdfwd/teleport-event-handler/fluentd"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// Renewed certificate files reach new connections without a restart: a
// client certificate rotated (the old one refused by the receiver from
// then on), then the CA (a receiver whose certificate the new CA signed).
func TestCertificatesAreReloaded(t *testing.T) {
	old := fluentd.ReloadEvery
	fluentd.ReloadEvery = 0
	defer func() { fluentd.ReloadEvery = old }()
	pki, err := testpki.Generate(t.TempDir())
	require.NoError(t, err)
	dir := t.TempDir()
	ca, cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	write := func(caPair, client *certs.Pair) {
		require.NoError(t, os.WriteFile(ca, caPair.CertPEM, 0o600))
		require.NoError(t, client.WriteFiles(cert, key))
	}
	write(pki.FluentdCA, pki.FluentdClient)

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

	tlsCfg, err := fluentd.TLSConfig(ca, cert, key)
	require.NoError(t, err)
	url := rcv.URL() + "/test.log"
	send := func() fluentd.Class {
		h := fluentd.NewHTTP(tlsCfg, 1) // a fresh connection each time
		defer h.Close()
		return h.NewSender().Send(context.Background(), url, [][]byte{[]byte(`{"uid":"x"}`)}).Class
	}
	require.Equal(t, fluentd.Success, send())

	// The client certificate is renewed, the old one revoked.
	renewed, err := certs.IssueClient(pki.FluentdCA, testpki.TeleportUser, certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	refused.Store(pki.FluentdClient.Cert)
	write(pki.FluentdCA, renewed)
	require.Equal(t, fluentd.Success, send(), "the renewed certificate is used")

	// A new CA: the receiver's certificate and the client's are its.
	pki2, err := testpki.Generate(t.TempDir())
	require.NoError(t, err)
	rcv2, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki2.ServerTLS(pki2.FluentdServer, pki2.FluentdCA)})
	require.NoError(t, err)
	defer rcv2.Close()
	url = rcv2.URL() + "/test.log"
	require.Error(t, fluentd.Check(context.Background(), url, tlsCfg), "the old CA does not trust the new receiver")
	write(pki2.FluentdCA, pki2.FluentdClient)
	require.NoError(t, fluentd.Check(context.Background(), url, tlsCfg))
	require.Equal(t, fluentd.Success, send())

	// A half-written renewal keeps the working certificate.
	require.NoError(t, os.WriteFile(cert, []byte("-----BEGIN CERT"), 0o600))
	require.Equal(t, fluentd.Success, send())
}
