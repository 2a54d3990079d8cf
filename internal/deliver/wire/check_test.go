package wire_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

type fixture struct {
	pki *testpki.Bundle
	rcv *fluentdsrv.Receiver
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	rcv, pki := fluentdsrv.StartForTest(t)
	return &fixture{pki: pki, rcv: rcv}
}

func TestCheckTellsFatalFromTransient(t *testing.T) {
	f := newFixture(t)
	cfg, err := wire.LoadCredentials(f.pki.FluentdCAFile, f.pki.FluentdClientCertFile, f.pki.FluentdClientKeyFile)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, wire.Check(ctx, f.rcv.URL()+"/test.log", cfg))

	var tlsErr *wire.TLSError
	otherCA, err := testpki.OtherCA(t.TempDir())
	require.NoError(t, err)
	wrong, err := wire.LoadCredentials(otherCA, f.pki.FluentdClientCertFile, f.pki.FluentdClientKeyFile)
	require.NoError(t, err)
	err = wire.Check(ctx, f.rcv.URL(), wrong)
	require.True(t, errors.As(err, &tlsErr), "%v", err)
	require.Contains(t, err.Error(), "--fluentd-ca")

	other := testpki.New(t)
	strict, err := fluentdsrv.Start(fluentdsrv.Config{TLS: f.pki.ServerTLS(f.pki.FluentdServer, other.FluentdCA)})
	require.NoError(t, err)
	defer strict.Close()
	err = wire.Check(ctx, strict.URL(), cfg)
	require.True(t, errors.As(err, &tlsErr), "%v", err)
	require.Contains(t, err.Error(), "client certificate")

	f.rcv.Down(time.Hour)
	var unreachable *wire.UnreachableError
	err = wire.Check(ctx, f.rcv.URL(), cfg)
	require.True(t, errors.As(err, &unreachable), "%v", err)
	f.rcv.Up()
}
