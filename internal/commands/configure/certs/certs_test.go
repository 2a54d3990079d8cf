package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/tlstest"
)

// Tests use RSA 2048: 4096-bit keys take seconds each.
var kinds = []Options{{KeyType: ECDSA}, {KeyType: RSA, RSABits: 2048}}

func TestChainsVerify(t *testing.T) {
	for _, o := range kinds {
		t.Run(string(o.KeyType), func(t *testing.T) {
			ca, err := NewCA("test CA", o)
			require.NoError(t, err)
			require.True(t, ca.Cert.IsCA)
			require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, ca.Cert.KeyUsage)
			require.Len(t, ca.Cert.SubjectKeyId, 20)
			require.True(t, ca.Cert.MaxPathLenZero)

			srv, err := IssueServer(ca, "server", []string{"localhost", "teleport.cluster.local"}, []net.IP{net.ParseIP("127.0.0.1")}, o)
			require.NoError(t, err)
			cli, err := IssueClient(ca, "client", o)
			require.NoError(t, err)
			require.Equal(t, ca.Cert.SubjectKeyId, srv.Cert.AuthorityKeyId)

			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			for _, name := range []string{"localhost", "teleport.cluster.local", "127.0.0.1"} {
				_, err = srv.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
				require.NoError(t, err, name)
			}
			_, err = srv.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"})
			require.Error(t, err, "a name outside the SANs")
			_, err = srv.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			require.Error(t, err, "a server certificate is no client certificate")

			_, err = cli.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			require.NoError(t, err)
			_, err = cli.Cert.Verify(x509.VerifyOptions{Roots: roots})
			require.Error(t, err, "a client certificate is no server certificate")
			require.Equal(t, "client", cli.Cert.Subject.CommonName)

			other, err := NewCA("other CA", Options{})
			require.NoError(t, err)
			otherRoots := x509.NewCertPool()
			otherRoots.AddCert(other.Cert)
			_, err = cli.Cert.Verify(x509.VerifyOptions{Roots: otherRoots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			require.ErrorAs(t, err, new(x509.UnknownAuthorityError))

			// A leaf cannot sign.
			_, err = IssueClient(cli, "nested", o)
			require.Error(t, err)
		})
	}
}

func TestKeyTypesAndPEM(t *testing.T) {
	ec, err := NewCA("ec", Options{})
	require.NoError(t, err)
	require.IsType(t, &ecdsa.PrivateKey{}, ec.Key)
	r, err := NewCA("rsa", Options{KeyType: RSA, RSABits: 2048})
	require.NoError(t, err)
	require.IsType(t, &rsa.PrivateKey{}, r.Key)
	require.Equal(t, 2048, r.Key.(*rsa.PrivateKey).N.BitLen())

	for _, p := range []*Pair{ec, r} {
		block, _ := pem.Decode(p.KeyPEM)
		require.Equal(t, "PRIVATE KEY", block.Type)
		_, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		require.NoError(t, err)
		_, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		require.NoError(t, err)
	}
}

func TestOptions(t *testing.T) {
	ca, err := NewCA("ca", Options{})
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(DefaultTTL), ca.Cert.NotAfter, time.Minute)
	require.True(t, ca.Cert.NotBefore.Before(time.Now()))

	_, err = NewCA("ca", Options{KeyType: "dsa"})
	require.ErrorContains(t, err, "dsa")
	_, err = NewCA("ca", Options{KeyType: RSA, RSABits: 1024})
	require.ErrorContains(t, err, "1024")
	_, err = NewCA("ca", Options{TTL: -time.Hour})
	require.Error(t, err)
	_, err = NewCA("", Options{})
	require.Error(t, err)
	_, err = IssueServer(ca, "srv", nil, nil, Options{})
	require.Error(t, err, "a server certificate without SANs")

	// A certificate issued in the past has expired.
	past := func() time.Time { return time.Now().Add(-48 * time.Hour) }
	old, err := IssueClient(ca, "old", Options{Now: past, TTL: 24 * time.Hour})
	require.NoError(t, err)
	require.True(t, old.Cert.NotAfter.Before(time.Now()))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err = old.Cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var invalid x509.CertificateInvalidError
	require.ErrorAs(t, err, &invalid)
	require.Equal(t, x509.Expired, invalid.Reason)

	// A leaf never outlives its CA.
	short, err := NewCA("short", Options{TTL: time.Hour})
	require.NoError(t, err)
	leaf, err := IssueClient(short, "leaf", Options{})
	require.NoError(t, err)
	require.Equal(t, short.Cert.NotAfter, leaf.Cert.NotAfter)

	// Serial numbers differ.
	again, err := IssueClient(ca, "old", Options{})
	require.NoError(t, err)
	require.NotEqual(t, old.Cert.SerialNumber, again.Cert.SerialNumber)
}

func TestTLSHandshake(t *testing.T) {
	for _, o := range kinds {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(string(o.KeyType)+tls.VersionName(version), func(t *testing.T) {
				ca, err := NewCA("ca", o)
				require.NoError(t, err)
				srv, err := IssueServer(ca, "srv", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, o)
				require.NoError(t, err)
				cli, err := IssueClient(ca, "cli", o)
				require.NoError(t, err)
				pool := x509.NewCertPool()
				pool.AddCert(ca.Cert)

				srvCert, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
				require.NoError(t, err)
				cliCert, err := tls.X509KeyPair(cli.CertPEM, cli.KeyPEM)
				require.NoError(t, err)
				peer, err := tlstest.Handshake(&tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MaxVersion: version},
					&tls.Config{Certificates: []tls.Certificate{cliCert}, RootCAs: pool, ServerName: "127.0.0.1", MaxVersion: version})
				require.NoError(t, err)
				require.Equal(t, "cli", peer)

				// Without a client certificate the server refuses.
				_, err = tlstest.Handshake(&tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MaxVersion: version},
					&tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: version})
				require.Error(t, err)
			})
		}
	}
}

func TestEncryptDecryptKey(t *testing.T) {
	for _, o := range kinds {
		t.Run(string(o.KeyType), func(t *testing.T) {
			ca, err := NewCA("ca", o)
			require.NoError(t, err)
			enc, err := EncryptKeyPEM(ca.KeyPEM, "s3cret")
			require.NoError(t, err)
			require.NotContains(t, string(enc), "Proc-Type", "not the legacy MD5-based form")
			block, _ := pem.Decode(enc)
			require.Equal(t, "ENCRYPTED PRIVATE KEY", block.Type)
			// PBES2 with PBKDF2 (1.2.840.113549.1.5.13 and .12), HMAC-SHA256
			// (1.2.840.113549.2.9) and AES-256-CBC (2.16.840.1.101.3.4.1.42).
			for _, oid := range []asn1.ObjectIdentifier{{1, 2, 840, 113549, 1, 5, 13}, {1, 2, 840, 113549, 1, 5, 12},
				{1, 2, 840, 113549, 2, 9}, {2, 16, 840, 1, 101, 3, 4, 1, 42}} {
				der, err := asn1.Marshal(oid)
				require.NoError(t, err)
				require.True(t, bytes.Contains(block.Bytes, der), "OID %v", oid)
			}
			require.NotContains(t, string(enc), string(ca.KeyPEM[30:60]))

			dec, err := DecryptKeyPEM(enc, "s3cret")
			require.NoError(t, err)
			require.Equal(t, ca.KeyPEM, dec)

			_, err = DecryptKeyPEM(enc, "wrong")
			require.ErrorIs(t, err, x509.IncorrectPasswordError)
			_, err = DecryptKeyPEM(ca.KeyPEM, "s3cret")
			require.ErrorContains(t, err, "not encrypted")
			_, err = EncryptKeyPEM(ca.KeyPEM, "")
			require.Error(t, err)
			_, err = EncryptKeyPEM(enc, "again")
			require.Error(t, err)

			// The legacy form older tools write is still read.
			k, err := parseKey(ca.KeyPEM)
			require.NoError(t, err)
			var typ string
			var der []byte
			if rk, ok := k.(*rsa.PrivateKey); ok {
				typ, der = "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)
			} else {
				typ = "EC PRIVATE KEY"
				der, err = x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
				require.NoError(t, err)
			}
			legacy, err := x509.EncryptPEMBlock(rand.Reader, typ, der, []byte("old"), x509.PEMCipherAES256) //nolint:staticcheck // the legacy form on purpose
			require.NoError(t, err)
			dec, err = DecryptKeyPEM(pem.EncodeToMemory(legacy), "old")
			require.NoError(t, err)
			require.Equal(t, ca.KeyPEM, dec)
		})
	}
}

func TestParsePair(t *testing.T) {
	ca, err := NewCA("ca", Options{})
	require.NoError(t, err)
	p, err := ParsePair(ca.CertPEM, ca.KeyPEM)
	require.NoError(t, err)
	require.Equal(t, ca.CertPEM, p.CertPEM)
	require.Equal(t, ca.KeyPEM, p.KeyPEM)
	// A parsed CA can issue.
	_, err = IssueClient(p, "client", Options{})
	require.NoError(t, err)

	other, err := NewCA("other", Options{})
	require.NoError(t, err)
	_, err = ParsePair(ca.CertPEM, other.KeyPEM)
	require.ErrorContains(t, err, "does not belong")
	_, err = ParsePair([]byte("garbage"), ca.KeyPEM)
	require.Error(t, err)
}

func TestWriteFiles(t *testing.T) {
	ca, err := NewCA("ca", Options{})
	require.NoError(t, err)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	// Pre-existing files with loose modes get the right modes.
	require.NoError(t, os.WriteFile(keyPath, []byte("old"), 0o666))
	require.NoError(t, os.Chmod(keyPath, 0o666))
	require.NoError(t, ca.WriteFiles(certPath, keyPath))

	for path, mode := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, mode, fi.Mode().Perm(), path)
	}
	got, err := os.ReadFile(certPath)
	require.NoError(t, err)
	require.True(t, bytes.Equal(ca.CertPEM, got))
	got, err = os.ReadFile(keyPath)
	require.NoError(t, err)
	require.True(t, bytes.Equal(ca.KeyPEM, got))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "no temporary files left")

	err = ca.WriteFiles(filepath.Join(dir, "missing", "ca.crt"), keyPath)
	require.Error(t, err)
	require.True(t, errors.Is(err, os.ErrNotExist))
}
