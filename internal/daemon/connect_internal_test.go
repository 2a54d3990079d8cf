package daemon

import (
	"context"
	"errors"
	"testing"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/persistence"
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

// Events for in_forward are encoded as its entries, from the Struct; for
// in_http as JSON; for a syslog receiver as RFC 5424 messages, with the
// facility of --syslog-facility and the cluster's name from Teleport.
func TestEventsAreEncodedForTheirURL(t *testing.T) {
	ev := &auditlogpb.EventUnstructured{Type: "user.login", Id: "u1", Unstructured: &structpb.Struct{Fields: map[string]*structpb.Value{
		"time": structpb.NewStringValue("2026-12-08T01:02:03Z"), "uid": structpb.NewStringValue("u1")}}}
	cfg := &config.Config{Fluentd: config.FluentdConfig{Facility: 10}}
	encode := encodeFor
	encodeFor := func(url string) inflight.Encode { return encode(cfg, url, "prod", "") }
	for url, kind := range map[string]eventmsgpack.Kind{
		"forward://127.0.0.1:24224/audit": eventmsgpack.WithTime, "forward://fluentd/session": eventmsgpack.WithTime,
		"https://127.0.0.1:8888/test.log": eventmsgpack.JSON,
	} {
		require.Equal(t, kind, eventmsgpack.Is(encodeFor(url)(ev)), url)
	}
	require.JSONEq(t, `{"time":"2026-12-08T01:02:03Z","uid":"u1"}`, string(encodeFor("https://fluentd:8888/a")(ev)))
	for _, url := range []string{"syslog+tls://siem:6514", "relp+tls://siem:2514/audit"} {
		require.Equal(t, `<85>1 2026-12-08T01:02:03Z prod teleport - user.login [teleport@32473 uid="u1" type="user.login" cluster="prod"] `+
			`{"time":"2026-12-08T01:02:03Z","uid":"u1"}`, string(encodeFor(url)(ev)), url)
	}
	rec := encode(cfg, "relp+tls://siem:2514", "prod", "s-1")(ev)
	require.Contains(t, string(rec), `sid="s-1" ei="0"]`, "a recording's events carry their session and index")
}

// A dead letter goes back as its JSON to Fluentd, and as a syslog message
// of that JSON to a syslog URL: a recording's naming the session of its URL.
func TestLettersAreSentAgainAsTheirURLTakes(t *testing.T) {
	body := LetterBody(&config.Config{Fluentd: config.FluentdConfig{Facility: 13}})
	js := []byte(`{"cluster_name":"prod","code":"T2000I","ei":3,"event":"print","time":"2026-12-08T01:02:03.5Z"}`)
	got, err := body(persistence.DeadLetter{URL: "https://f:8888/session.s-1.log", Stream: "session", Event: js})
	require.NoError(t, err)
	require.Equal(t, string(js), string(got))
	got, err = body(persistence.DeadLetter{URL: "relp+tls://siem:2514/.6c8a36a4-0c1f-4d0e-9b2b-3f5c4f1c9a7e.log", Stream: "session", EventID: "e1", Event: js})
	require.NoError(t, err)
	require.Equal(t, `<110>1 2026-12-08T01:02:03.5Z prod teleport - print [teleport@32473 uid="e1" type="print" cluster="prod" code="T2000I" `+
		`sid="6c8a36a4-0c1f-4d0e-9b2b-3f5c4f1c9a7e" ei="3"] `+string(js), string(got))
	got, err = body(persistence.DeadLetter{URL: "syslog+tls://siem:6514", Stream: "audit", EventID: "e2", Event: []byte(`{"event":"user.login","uid":"e2"}`)})
	require.NoError(t, err)
	require.Equal(t, `<109>1 - - teleport - user.login [teleport@32473 uid="e2" type="user.login" cluster=""] {"event":"user.login","uid":"e2"}`, string(got))
}
