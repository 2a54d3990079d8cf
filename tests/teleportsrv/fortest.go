package teleportsrv

import (
	"testing"

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
