package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gravitational/teleport/api/client"
	"github.com/gravitational/teleport/api/identityfile"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/tlstest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

func TestGenerateWritesEveryFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	b, err := Generate(dir)
	require.NoError(t, err)
	for _, f := range []string{b.TeleportCAFile, b.TeleportCertFile, b.IdentityFile, b.FluentdCAFile, b.FluentdServerCertFile, b.FluentdClientCertFile} {
		_, err := os.Stat(f)
		require.NoError(t, err, f)
	}
	for _, f := range []string{b.TeleportKeyFile, b.IdentityFile, b.FluentdServerKeyFile, b.FluentdClientKeyFile} {
		fi, err := os.Stat(f)
		require.NoError(t, err, f)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
	}

	roots := x509.NewCertPool()
	roots.AddCert(b.TeleportCA.Cert)
	for _, name := range []string{"teleport.cluster.local", "localhost", "127.0.0.1"} {
		_, err = b.TeleportServer.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name})
		require.NoError(t, err, name)
	}
	_, err = b.TeleportClient.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	require.Equal(t, "teleport-event-handler", b.TeleportClient.Cert.Subject.CommonName)

	roots = x509.NewCertPool()
	roots.AddCert(b.FluentdCA.Cert)
	for _, name := range []string{"localhost", "127.0.0.1"} {
		_, err = b.FluentdServer.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name})
		require.NoError(t, err, name)
	}
	_, err = b.FluentdClient.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	// The two sides do not trust each other.
	_, err = b.TeleportClient.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.Error(t, err)
}

func TestTeleportCredentialsLoadWithTheAPIClient(t *testing.T) {
	b, err := Generate(t.TempDir())
	require.NoError(t, err)

	id, err := identityfile.ReadFile(b.IdentityFile)
	require.NoError(t, err)
	require.Equal(t, b.TeleportClient.CertPEM, id.Certs.TLS)
	require.Equal(t, b.TeleportClient.KeyPEM, id.PrivateKey)
	require.Equal(t, [][]byte{b.TeleportCA.CertPEM}, id.CACerts.TLS)
	require.Len(t, id.CACerts.SSH, 1)
	exp, ok := id.Expiry()
	require.True(t, ok)
	require.Equal(t, b.TeleportClient.Cert.NotAfter, exp)

	pub, _, _, _, err := ssh.ParseAuthorizedKey(id.Certs.SSH)
	require.NoError(t, err)
	sshCert := pub.(*ssh.Certificate)
	require.Equal(t, uint64(b.TeleportClient.Cert.NotAfter.Unix()), sshCert.ValidBefore)
	require.Contains(t, sshCert.ValidPrincipals, "teleport-event-handler")
	caPub, err := ssh.NewPublicKey(b.TeleportCA.Key.Public())
	require.NoError(t, err)
	checker := ssh.CertChecker{IsUserAuthority: func(k ssh.PublicKey) bool { return string(k.Marshal()) == string(caPub.Marshal()) }}
	require.NoError(t, checker.CheckCert("teleport-event-handler", sshCert))

	creds := []client.Credentials{
		client.LoadIdentityFile(b.IdentityFile),
		client.LoadKeyPair(b.TeleportCertFile, b.TeleportKeyFile, b.TeleportCAFile),
	}
	dyn, err := client.NewDynamicIdentityFileCreds(b.IdentityFile)
	require.NoError(t, err)
	creds = append(creds, dyn)
	for i, c := range creds {
		cfg, err := c.TLSConfig()
		require.NoError(t, err, i)
		require.Equal(t, "teleport.cluster.local", cfg.ServerName)
		cn, err := tlstest.Handshake(b.ServerTLS(b.TeleportServer, b.TeleportCA), cfg)
		require.NoError(t, err, i)
		require.Equal(t, "teleport-event-handler", cn)
		if i != 1 { // key pairs carry no SSH certificate
			_, err = c.SSHClientConfig()
			require.NoError(t, err, i)
		}
	}
}

func TestExpiredIdentityAndOtherCA(t *testing.T) {
	b, err := Generate(t.TempDir())
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "expired")
	require.NoError(t, b.ExpiredIdentity(path))
	id, err := identityfile.ReadFile(path)
	require.NoError(t, err)
	exp, ok := id.Expiry()
	require.True(t, ok)
	require.True(t, exp.Before(time.Now()), "expired at %s", exp)
	cfg, err := client.LoadIdentityFile(path).TLSConfig()
	require.NoError(t, err)
	_, err = tlstest.Handshake(b.ServerTLS(b.TeleportServer, b.TeleportCA), cfg)
	require.Error(t, err)

	caFile, err := OtherCA(t.TempDir())
	require.NoError(t, err)
	cfg, err = client.LoadKeyPair(b.TeleportCertFile, b.TeleportKeyFile, caFile).TLSConfig()
	require.NoError(t, err)
	_, err = tlstest.Handshake(b.ServerTLS(b.TeleportServer, b.TeleportCA), cfg)
	require.ErrorContains(t, err, "certificate signed by unknown authority")
}

func TestRenewedIdentityReloads(t *testing.T) {
	b, err := Generate(t.TempDir())
	require.NoError(t, err)
	dyn, err := client.NewDynamicIdentityFileCreds(b.IdentityFile)
	require.NoError(t, err)
	before, _ := dyn.Expiry()
	renewed, err := b.NewTeleportClient()
	require.NoError(t, err)
	require.NoError(t, WriteIdentityFile(b.IdentityFile, b.TeleportCA, renewed))
	require.NoError(t, dyn.Reload())
	cfg, err := dyn.TLSConfig()
	require.NoError(t, err)
	cert, err := cfg.GetClientCertificate(nil)
	require.NoError(t, err)
	require.Equal(t, renewed.Cert.Raw, cert.Certificate[0])
	after, _ := dyn.Expiry()
	require.False(t, after.Before(before))
}

func TestFluentdServerTLS(t *testing.T) {
	b, err := Generate(t.TempDir())
	require.NoError(t, err)
	pair, err := tls.LoadX509KeyPair(b.FluentdClientCertFile, b.FluentdClientKeyFile)
	require.NoError(t, err)
	pem, err := os.ReadFile(b.FluentdCAFile)
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	_, err = tlstest.Handshake(b.ServerTLS(b.FluentdServer, b.FluentdCA), &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "localhost"})
	require.NoError(t, err)
	// The Teleport client certificate is not accepted by Fluentd.
	tp, err := tls.LoadX509KeyPair(b.TeleportCertFile, b.TeleportKeyFile)
	require.NoError(t, err)
	_, err = tlstest.Handshake(b.ServerTLS(b.FluentdServer, b.FluentdCA), &tls.Config{Certificates: []tls.Certificate{tp}, RootCAs: roots, ServerName: "localhost"})
	require.Error(t, err)
}
