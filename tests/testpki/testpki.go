// Package testpki writes a complete set of test credentials: a Teleport CA
// with server, client and identity file, and a Fluentd CA with server and
// client certificates.
package testpki

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gravitational/teleport/api/identityfile"
	"golang.org/x/crypto/ssh"

	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
)

const (
	// ClusterName is the Teleport cluster the credentials belong to; it
	// matches teleportsrv's default.
	ClusterName = "test-cluster"
	// TeleportUser is the common name of the Teleport client certificate.
	TeleportUser = "teleport-event-handler"
	// TeleportServerName is the name the Teleport API client verifies.
	TeleportServerName = "teleport.cluster.local"
)

// Bundle is a directory of credentials and the pairs they were made from.
type Bundle struct {
	Dir string

	// Teleport side. The server certificate is valid for
	// teleport.cluster.local, localhost and 127.0.0.1; the client's common
	// name is TeleportUser.
	TeleportCA, TeleportServer, TeleportClient *certs.Pair
	// Files for --teleport-ca, --teleport-cert, --teleport-key and
	// --teleport-identity.
	TeleportCAFile, TeleportCertFile, TeleportKeyFile, IdentityFile string

	// Fluentd side. The server certificate is valid for localhost and
	// 127.0.0.1.
	FluentdCA, FluentdServer, FluentdClient                                                                 *certs.Pair
	FluentdCAFile, FluentdServerCertFile, FluentdServerKeyFile, FluentdClientCertFile, FluentdClientKeyFile string
}

// ecdsa keys everywhere: RSA generation would dominate test time.
var opts = certs.Options{KeyType: certs.ECDSA}

var loopback = []net.IP{net.IPv4(127, 0, 0, 1)}

// Generate creates fresh CAs and certificates and writes them into dir
// (created if missing).
func Generate(dir string) (*Bundle, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	b := &Bundle{
		Dir:                   dir,
		TeleportCAFile:        filepath.Join(dir, "teleport-ca.crt"),
		TeleportCertFile:      filepath.Join(dir, "teleport-client.crt"),
		TeleportKeyFile:       filepath.Join(dir, "teleport-client.key"),
		IdentityFile:          filepath.Join(dir, "teleport-identity"),
		FluentdCAFile:         filepath.Join(dir, "fluentd-ca.crt"),
		FluentdServerCertFile: filepath.Join(dir, "fluentd-server.crt"),
		FluentdServerKeyFile:  filepath.Join(dir, "fluentd-server.key"),
		FluentdClientCertFile: filepath.Join(dir, "fluentd-client.crt"),
		FluentdClientKeyFile:  filepath.Join(dir, "fluentd-client.key"),
	}
	var err error
	if b.TeleportCA, err = certs.NewCA("Teleport test CA "+ClusterName, opts); err != nil {
		return nil, err
	}
	if b.TeleportServer, err = certs.IssueServer(b.TeleportCA, TeleportServerName, []string{TeleportServerName, "localhost"}, loopback, opts); err != nil {
		return nil, err
	}
	if b.TeleportClient, err = b.NewTeleportClient(); err != nil {
		return nil, err
	}
	if b.FluentdCA, err = certs.NewCA("Fluentd test CA", opts); err != nil {
		return nil, err
	}
	if b.FluentdServer, err = certs.IssueServer(b.FluentdCA, "localhost", []string{"localhost"}, loopback, opts); err != nil {
		return nil, err
	}
	if b.FluentdClient, err = certs.IssueClient(b.FluentdCA, TeleportUser, opts); err != nil {
		return nil, err
	}

	for _, w := range []struct {
		pair      *certs.Pair
		cert, key string
	}{
		{b.TeleportCA, b.TeleportCAFile, ""},
		{b.TeleportServer, filepath.Join(dir, "teleport-server.crt"), filepath.Join(dir, "teleport-server.key")},
		{b.TeleportClient, b.TeleportCertFile, b.TeleportKeyFile},
		{b.FluentdCA, b.FluentdCAFile, ""},
		{b.FluentdServer, b.FluentdServerCertFile, b.FluentdServerKeyFile},
		{b.FluentdClient, b.FluentdClientCertFile, b.FluentdClientKeyFile},
	} {
		if w.key == "" {
			// CA keys stay in memory: nothing needs them on disk.
			if err := os.WriteFile(w.cert, w.pair.CertPEM, 0o644); err != nil {
				return nil, fmt.Errorf("write %s: %w", w.cert, err)
			}
			continue
		}
		if err := w.pair.WriteFiles(w.cert, w.key); err != nil {
			return nil, fmt.Errorf("%s: %w", w.cert, err)
		}
	}
	if err := WriteIdentityFile(b.IdentityFile, b.TeleportCA, b.TeleportClient); err != nil {
		return nil, err
	}
	return b, nil
}

// NewTeleportClient issues another Teleport client certificate (common name
// TeleportUser) from the bundle's Teleport CA, for example to renew an
// identity file while the daemon runs.
func (b *Bundle) NewTeleportClient() (*certs.Pair, error) {
	return certs.IssueClient(b.TeleportCA, TeleportUser, opts)
}

// NewFluentdClient issues another Fluentd client certificate from the
// bundle's Fluentd CA, for example to renew it while the daemon runs.
func (b *Bundle) NewFluentdClient() (*certs.Pair, error) {
	return certs.IssueClient(b.FluentdCA, TeleportUser, opts)
}

// ExpiredIdentity writes an identity file whose TLS and SSH certificates,
// issued by the bundle's Teleport CA, expired a day ago.
func (b *Bundle) ExpiredIdentity(path string) error {
	past := opts
	past.Now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
	past.TTL = 24 * time.Hour
	client, err := certs.IssueClient(b.TeleportCA, TeleportUser, past)
	if err != nil {
		return err
	}
	return WriteIdentityFile(path, b.TeleportCA, client)
}

// OtherCA writes the certificate of a fresh CA that signed nothing in any
// bundle to dir/other-ca.crt, for "wrong CA" tests.
func OtherCA(dir string) (caFile string, err error) {
	ca, err := certs.NewCA("Unrelated test CA", opts)
	if err != nil {
		return "", err
	}
	caFile = filepath.Join(dir, "other-ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", caFile, err)
	}
	return caFile, nil
}

// ServerTLS is a server configuration presenting pair and requiring client
// certificates signed by clientCA. Callers may adjust the returned config
// (it is theirs); servers that speak ALPN add their protocols themselves.
func (b *Bundle) ServerTLS(pair *certs.Pair, clientCA *certs.Pair) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{pair.Cert.Raw},
			PrivateKey:  pair.Key,
			Leaf:        pair.Cert,
		}},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		MinVersion: tls.VersionTLS12,
	}
}

// WriteIdentityFile writes a Teleport identity file (what `tctl auth sign
// --format=file` produces) for client, issued by ca: the private key, an SSH
// user certificate over the same key signed by ca's key acting as SSH CA
// (valid as long as the TLS certificate), the TLS certificate, the SSH host
// CA as an @cert-authority line, and the TLS CA. client.LoadIdentityFile and
// client.NewDynamicIdentityFileCreds read it.
func WriteIdentityFile(path string, ca *certs.Pair, client *certs.Pair) error {
	sshCert, err := userSSHCert(ca, client)
	if err != nil {
		return err
	}
	caSigner, err := ssh.NewSignerFromSigner(ca.Key)
	if err != nil {
		return fmt.Errorf("SSH CA key: %w", err)
	}
	// The format of Teleport's MarshalAuthorizedHostsFormat.
	knownHost := fmt.Sprintf("@cert-authority %s,*.%s %s type=host\n",
		ClusterName, ClusterName, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(caSigner.PublicKey()))))
	id := &identityfile.IdentityFile{
		PrivateKey: client.KeyPEM,
		Certs: identityfile.Certs{
			SSH: ssh.MarshalAuthorizedKey(sshCert),
			TLS: client.CertPEM,
		},
		CACerts: identityfile.CACerts{
			SSH: [][]byte{[]byte(knownHost)},
			TLS: [][]byte{ca.CertPEM},
		},
	}
	// Write to a temporary file and rename, so that a daemon reloading the
	// identity never reads half a file.
	tmp := path + ".tmp"
	if err := identityfile.Write(id, tmp); err != nil {
		return fmt.Errorf("write identity file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write identity file %s: %w", path, err)
	}
	return nil
}

func userSSHCert(ca, client *certs.Pair) (*ssh.Certificate, error) {
	if ca == nil || ca.Key == nil || client == nil || client.Cert == nil {
		return nil, errors.New("identity file: missing CA or client pair")
	}
	pub, err := ssh.NewPublicKey(client.Key.Public())
	if err != nil {
		return nil, fmt.Errorf("SSH public key: %w", err)
	}
	signer, err := ssh.NewSignerFromSigner(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("SSH CA key: %w", err)
	}
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	user := client.Cert.Subject.CommonName
	cert := &ssh.Certificate{
		Key:      pub,
		Serial:   binary.BigEndian.Uint64(serial[:]),
		CertType: ssh.UserCert,
		KeyId:    user,
		// Teleport puts this principal on every user certificate; the API
		// client uses it as the SSH user for tunnel dials.
		ValidPrincipals: []string{user, "-teleport-internal-join"},
		ValidAfter:      uint64(client.Cert.NotBefore.Unix()),
		ValidBefore:     uint64(client.Cert.NotAfter.Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{
			"permit-port-forwarding": "",
			"permit-pty":             "",
		}},
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		return nil, fmt.Errorf("sign SSH certificate: %w", err)
	}
	return cert, nil
}
