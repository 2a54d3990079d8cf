package fluentdsrv

import (
	"testing"

	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// StartForTest generates credentials in a temporary directory of t, starts a
// receiver with them (client certificates required) and closes it with the
// test.
func StartForTest(t testing.TB) (*Receiver, *testpki.Bundle) {
	t.Helper()
	pki, err := testpki.Generate(t.TempDir())
	if err != nil {
		t.Fatalf("test credentials: %v", err)
	}
	rcv, err := Start(Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)})
	if err != nil {
		t.Fatalf("start the receiver: %v", err)
	}
	t.Cleanup(rcv.Close)
	return rcv, pki
}
