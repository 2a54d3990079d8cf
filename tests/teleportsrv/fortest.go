package teleportsrv

import (
	"context"
	"testing"
	"time"

	"github.com/gravitational/teleport/api/client"

	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// StartTLS starts a server for a test with the bundle's Teleport server
// certificate, trusting the bundle's Teleport CA, and closes it when the
// test ends.
func StartTLS(t testing.TB, pki *testpki.Bundle) *Server {
	t.Helper()
	s, err := Start(Config{TLS: pki.ServerTLS(pki.TeleportServer, pki.TeleportCA)})
	if err != nil {
		t.Fatalf("start the test Teleport server: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartNew is StartTLS with a fresh bundle of the test's own, which it
// returns too: its client certificates are what the server trusts.
func StartNew(t testing.TB) (*Server, *testpki.Bundle) {
	t.Helper()
	pki := testpki.New(t)
	return StartTLS(t, pki), pki
}

// KeyPair is the bundle's Teleport client certificate, trusting its
// Teleport CA: what a client of StartTLS's server connects with.
func KeyPair(pki *testpki.Bundle) client.Credentials {
	return client.LoadKeyPair(pki.TeleportCertFile, pki.TeleportKeyFile, pki.TeleportCAFile)
}

// Connect connects the unmodified teleport/api client to s with creds and
// closes it when the test ends; it fails the test if it cannot.
func Connect(t testing.TB, s *Server, creds client.Credentials) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clt, err := client.New(ctx, client.Config{
		Addrs:       []string{s.Addr()},
		Credentials: []client.Credentials{creds},
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("connect to the test Teleport server: %v", err)
	}
	t.Cleanup(func() { clt.Close() })
	return clt
}
