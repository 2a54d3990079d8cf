package teleport_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// A failed connection is one short line an operator reads at a glance:
// what failed, the address, the fix, then the root cause, without the
// client's nested gRPC and trace text.
func TestConnectErrorIsOneShortLineWithTheFixFirst(t *testing.T) {
	srv, pki := teleportsrv.StartNew(t)
	otherCA, err := testpki.OtherCA(t.TempDir())
	require.NoError(t, err)

	keyPair := teleport.Config{CA: pki.TeleportCAFile, Cert: pki.TeleportCertFile, Key: pki.TeleportKeyFile}
	for _, c := range []struct {
		name  string
		cfg   teleport.Config
		kind  teleport.Kind
		cause string
	}{
		{"closed port", with(keyPair, harness.FreeAddr(t), ""), teleport.Unreachable, "connection refused"},
		{"closed port, identity file", teleport.Config{Addr: harness.FreeAddr(t), Identity: pki.IdentityFile}, teleport.Unreachable, "connection refused"},
		{"wrong CA", with(keyPair, srv.Addr(), otherCA), teleport.TLS, "x509: certificate signed by unknown authority"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The client retries a refused dial until its deadline: a short
			// one keeps the test quick.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			conn, err := teleport.Connect(ctx, c.cfg)
			if conn != nil {
				conn.Close()
			}
			var ce *teleport.ConnectError
			require.True(t, errors.As(err, &ce), "%v", err)
			require.Equal(t, c.kind, ce.Kind)
			require.Equal(t, c.cause, ce.Cause())
			msg := err.Error()
			t.Logf("%d characters: %s", len(msg), msg)
			require.NotContains(t, msg, "\n")
			require.NotContains(t, msg, `desc =`)
			require.NotContains(t, msg, "all connection methods failed")
			require.LessOrEqual(t, len(msg), 300)
			require.True(t, strings.HasPrefix(msg, "teleport at "+c.cfg.Addr+": "+string(c.kind)+": "), msg)
			fix, cause := strings.Index(msg, ce.Fix), strings.Index(msg, c.cause)
			require.True(t, fix > 0 && cause > fix, "the fix, then the cause: %s", msg)
		})
	}
}

func with(cfg teleport.Config, addr, ca string) teleport.Config {
	cfg.Addr = addr
	if ca != "" {
		cfg.CA = ca
	}
	return cfg
}

// The root cause is the innermost message of the Go and gRPC stacks,
// whatever wraps it.
func TestCauseCondensesTheClientsNestedText(t *testing.T) {
	for raw, want := range map[string]string{
		"all connection methods failed\n\t\n\tfailed to connect to addr 127.0.0.1:1 as an auth server\n\t\tcontext deadline exceeded: connection error: desc = \"transport: Error while dialing: failed to dial: dial tcp 127.0.0.1:1: connect: connection refused\", context deadline exceeded":                                                      "connection refused",
		"all connection methods failed\n\t\n\tfailed to connect to addr 127.0.0.1:4433 as an auth server\n\t\tcontext deadline exceeded: connection error: desc = \"transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate is valid for localhost, not teleport.cluster.local\", context deadline exceeded": "x509: certificate is valid for localhost, not teleport.cluster.local",
		"failed to connect to addr 127.0.0.1:1 as a web proxy\n\t\tcontext deadline exceeded: connection error: desc = \"transport: Error while dialing: failed to dial: Get \\\"https://127.0.0.1:1/webapi/find\\\": dial tcp 127.0.0.1:1: connect: connection refused\", ":                                                                          "connection refused",
		"all connection methods failed\n\t\n\tfailed to connect to addr 127.0.0.1:4434 as a reverse tunnel proxy\n\t\tcontext deadline exceeded: connection error: desc = \"transport: Error while dialing: failed to dial: ssh: handshake failed: EOF, close tcp 127.0.0.1:52928->127.0.0.1:4434: use of closed network connection\", \n\tfailed to connect to addr 127.0.0.1:4434 as a web proxy\n\t\tcontext deadline exceeded: connection error: desc = \"transport: Error while dialing: failed to dial: Get \\\"https://127.0.0.1:4434/webapi/find\\\": tls: failed to verify certificate: x509: certificate signed by unknown authority (possibly because of \\\"x509: invalid signature: parent certificate cannot sign this kind of certificate\\\" while trying to verify candidate authority certificate \\\"localhost\\\")\", context deadline exceeded": "x509: certificate signed by unknown authority",
		"connection error: desc = \"transport: Error while dialing: dial tcp: lookup teleport.invalid on 127.0.0.53:53: no such host\"": "lookup teleport.invalid on 127.0.0.53:53: no such host",
		"connection error: desc = \"transport: authentication handshake failed: remote error: tls: bad certificate\"":                   "remote error: tls: bad certificate",
		"connection error: desc = \"transport: Error while dialing: dial tcp 10.0.0.1:3025: i/o timeout\"":                              "i/o timeout",
		"failed to connect to addr x:3025 as an auth server\n\tcontext deadline exceeded":                                               "no answer in time (context deadline exceeded)",
		"access denied to perform action \"read\" on \"event\"":                                                                         "access denied to perform action \"read\" on \"event\"",
		"open /etc/teleport/client.crt: no such file or directory":                                                                      "open /etc/teleport/client.crt: no such file or directory",
	} {
		require.Equal(t, want, (&teleport.ConnectError{Err: errors.New(raw)}).Cause(), raw)
	}
}
