package daemon

import (
	"context"
	"errors"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
)

// A stop that comes while an attempt to reach Teleport is on its way wins
// over what the attempt then meets, a certificate refused included: the
// daemon was asked to stop, and exits 0 as after any stop while waiting.
// (The explorer met it: its SIGTERM and its swap of the certificates back
// raced an attempt, and the daemon exited 1.)
func TestAStopWinsOverAFailedAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	connect := dialTeleport
	defer func() { dialTeleport = connect }()
	dialTeleport = func(context.Context, teleport.Config) (*teleport.Conn, error) {
		cancel() // the signal, while the handshake runs
		return nil, &teleport.ConnectError{Addr: "127.0.0.1:3025", Kind: teleport.TLS, Err: errors.New("x509: certificate signed by unknown authority")}
	}
	_, err := waitForTeleport(ctx, teleport.Config{Addr: "127.0.0.1:3025"}, zerolog.Nop())
	require.ErrorIs(t, err, errStopped)

	// Without a stop, the same refusal is fatal at once.
	dialTeleport = func(context.Context, teleport.Config) (*teleport.Conn, error) {
		return nil, &teleport.ConnectError{Addr: "127.0.0.1:3025", Kind: teleport.TLS, Err: errors.New("x509: certificate signed by unknown authority")}
	}
	_, err = waitForTeleport(context.Background(), teleport.Config{Addr: "127.0.0.1:3025"}, zerolog.Nop())
	var ce *teleport.ConnectError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, teleport.TLS, ce.Kind)
}
