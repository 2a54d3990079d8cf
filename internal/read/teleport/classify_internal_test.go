package teleport

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// When the client's dial as an auth server runs out of time, it also
// reports its other ways, among them a web proxy's /webapi/find verified
// against the system's roots, which fails with x509 against any private
// CA. That is no certificate problem of the daemon's: Teleport did not
// answer in time, and the daemon waits for it rather than exiting with a
// wrong fix. The text is the client's, captured against the test server
// behind a slow proxy.
func TestAnAuthDialOutOfTimeIsUnreachableWhateverTheOtherWaysMet(t *testing.T) {
	const slow = "all connection methods failed\n\t\n\tfailed to connect to addr 127.0.0.1:39623 as a reverse tunnel proxy\n\t\tcontext deadline exceeded: connection error: desc = \"transport: Error while dialing: failed to dial: ssh: handshake failed: EOF, close tcp 127.0.0.1:58030->127.0.0.1:39623: use of closed network connection\", \n\tfailed to connect to addr 127.0.0.1:39623 with TLS Routing with ALPN connection upgrade dialer\n\t\tcontext deadline exceeded: connection error: desc = \"transport: Error while dialing: failed to dial: Get \\\"https://127.0.0.1:39623/webapi/find\\\": tls: failed to verify certificate: x509: certificate signed by unknown authority\", \n\tfailed to connect to addr 127.0.0.1:39623 as a web proxy\n\t\tcontext deadline exceeded: connection error: desc = \"transport: Error while dialing: failed to dial: Get \\\"https://127.0.0.1:39623/webapi/find\\\": tls: failed to verify certificate: x509: certificate signed by unknown authority\", \n\tfailed to connect to addr 127.0.0.1:39623 as an auth server\n\t\tcontext deadline exceeded, context deadline exceeded"
	var ce *ConnectError
	require.True(t, errors.As(classify("127.0.0.1:39623", errors.New(slow)), &ce))
	require.Equal(t, Unreachable, ce.Kind)
	require.Equal(t, "no answer in time (context deadline exceeded)", ce.Cause(), "not the web proxy's x509")

	// An auth server that answers with a certificate of another CA is a
	// certificate problem, whatever the other ways met.
	const wrongCA = "all connection methods failed\n\t\n\tfailed to connect to addr 127.0.0.1:4433 as an auth server\n\t\tcontext deadline exceeded: connection error: desc = \"transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority\", context deadline exceeded"
	require.True(t, errors.As(classify("127.0.0.1:4433", errors.New(wrongCA)), &ce))
	require.Equal(t, TLS, ce.Kind)
}
