package wire_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
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

// once is unreachable at its first check, reachable after.
type once struct{ checks int }

func (o *once) Check(_ context.Context, url string) error {
	if o.checks++; o.checks == 1 {
		return &wire.UnreachableError{URL: url, Err: errors.New("connection refused")}
	}
	return nil
}
func (o *once) NewSender() wire.Sender { return nil }
func (o *once) Close()                 {}

// While it waits, the log names the receiver a URL reaches: Fluentd, or a
// syslog receiver.
func TestWaitReadyNamesTheReceiver(t *testing.T) {
	for url, want := range map[string]string{
		"https://fluentd:8888/a":  "fluentd is unreachable; waiting for it",
		"relp+tls://siem:2514":    "the syslog receiver is unreachable; waiting for it",
		"syslog+tls://siem:6514/": "the syslog receiver is reachable",
	} {
		var out bytes.Buffer
		require.NoError(t, wire.WaitReady(context.Background(), &once{}, url, zerolog.New(&out)))
		require.Contains(t, out.String(), want, url)
	}
}
