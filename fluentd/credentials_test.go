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

// A renewed client certificate reaches new connections without a restart
// (the old one is refused by the receiver from then on), and a half-written
// renewal keeps the working one.
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

	// A half-written renewal keeps the working certificate.
	require.NoError(t, os.WriteFile(cert, []byte("-----BEGIN CERT"), 0o600))
	require.Equal(t, fluentd.Success, send())
}
