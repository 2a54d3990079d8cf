package fluentd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fdfwd/teleport-event-handler/fluentd"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func forwardReceiver(t *testing.T, key []byte) (*fluentdsrv.Receiver, *testpki.Bundle) {
	t.Helper()
	pki, err := testpki.Generate(t.TempDir())
	require.NoError(t, err)
	rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA), SharedKey: key})
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	return rcv, pki
}

func forwardTransport(t *testing.T, pki *testpki.Bundle, opts fluentd.ForwardOptions) *fluentd.Forward {
	t.Helper()
	cfg, err := fluentd.LoadCredentials(pki.FluentdCAFile, pki.FluentdClientCertFile, pki.FluentdClientKeyFile)
	require.NoError(t, err)
	if opts.Hostname == "" {
		opts.Hostname = "test"
	}
	return fluentd.NewForward(cfg, opts)
}

const event = `{"code":"T1000I","ei":2147483647,"event":"user.login","success":true,"time":"2026-11-03T10:00:00.123456789Z",` +
	`"uid":"u1","size":1.5,"big":18446744073709551615,"addr":{"remote":"10.0.0.1:5000"},"roles":["a","b"],"none":null}`

// A record arrives as the event's fields: strings, integers that stay
// integers, floats, nested objects and arrays, null; the message time is
// the event's time with its nanoseconds.
func TestForwardSendsTheEventAsARecord(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, gzip := range []bool{false, true} {
		rcv, pki := forwardReceiver(t, nil)
		tr := forwardTransport(t, pki, fluentd.ForwardOptions{Gzip: gzip})
		require.NoError(t, tr.Check(context.Background(), rcv.ForwardURL()+"/test.log"))
		s := tr.NewSender()
		res := s.Send(context.Background(), rcv.ForwardURL()+"/audit/events", [][]byte{[]byte(event), []byte(event)})
		require.Equal(t, fluentd.Success, res.Class, res.Reason)
		s.Close()
		recs := rcv.Records("audit.events")
		require.Len(t, recs, 2)
		var want, got map[string]any
		require.NoError(t, json.Unmarshal([]byte(event), &want))
		require.NoError(t, json.Unmarshal(recs[0], &got))
		require.Equal(t, want, got)
		require.Contains(t, string(recs[0]), `"ei":2147483647`, "an integer stays an integer")
		require.Equal(t, time.Date(2026, 11, 3, 10, 0, 0, 123456789, time.UTC), rcv.EventTimes("audit.events")[0].UTC())
		mode := map[bool]string{false: "packed", true: "compressed"}[gzip]
		require.Equal(t, map[string]int{mode: 1}, rcv.ForwardMessages())
		rcv.Close()
	}
}

func TestForwardHandshake(t *testing.T) {
	rcv, pki := forwardReceiver(t, []byte("s3cret"))
	url := rcv.ForwardURL() + "/test.log"
	ok := forwardTransport(t, pki, fluentd.ForwardOptions{SharedKey: []byte("s3cret")})
	require.NoError(t, ok.Check(context.Background(), url))
	s := ok.NewSender()
	defer s.Close()
	require.Equal(t, fluentd.Success, s.Send(context.Background(), url, [][]byte{[]byte(event)}).Class)

	var auth *fluentd.AuthError
	wrong := forwardTransport(t, pki, fluentd.ForwardOptions{SharedKey: []byte("guess")})
	err := wrong.Check(context.Background(), url)
	require.ErrorAs(t, err, &auth)
	require.Contains(t, err.Error(), "shared_key mismatch", "the server's reason")
	ws := wrong.NewSender()
	defer ws.Close()
	res := ws.Send(context.Background(), url, [][]byte{[]byte(event)})
	require.Equal(t, fluentd.Refused, res.Class, "a refused key is never a dead letter")

	none := forwardTransport(t, pki, fluentd.ForwardOptions{})
	require.ErrorAs(t, none.Check(context.Background(), url), &auth)
	require.Contains(t, none.Check(context.Background(), url).Error(), "--fluentd-shared-key")

	plain, pki2 := forwardReceiver(t, nil)
	_ = pki2
	err = forwardTransport(t, pki2, fluentd.ForwardOptions{SharedKey: []byte("s3cret")}).Check(context.Background(), plain.ForwardURL()+"/x")
	require.ErrorAs(t, err, &auth)
	require.Contains(t, err.Error(), "no <security>")
}

// A shared key given by file is read again for each new connection: a
// rotated key (Fluentd restarted with the new one) reaches the daemon
// without a restart, and a file emptied meanwhile keeps the working key.
func TestForwardSharedKeyFileIsReadAgain(t *testing.T) {
	rcv, pki := forwardReceiver(t, []byte("first"))
	url := rcv.ForwardURL() + "/test.log"
	file := filepath.Join(t.TempDir(), "shared.key")
	require.NoError(t, os.WriteFile(file, []byte("first\n"), 0o600))
	f := forwardTransport(t, pki, fluentd.ForwardOptions{SharedKey: []byte("first"), SharedKeyFile: file})
	send := func() fluentd.Class {
		s := f.NewSender() // a fresh connection each time
		defer s.Close()
		return s.Send(context.Background(), url, [][]byte{[]byte(event)}).Class
	}
	require.Equal(t, fluentd.Success, send())

	rcv.SetSharedKey([]byte("second"))
	require.Equal(t, fluentd.Refused, send(), "the old key")
	require.NoError(t, os.WriteFile(file, []byte("second\n"), 0o600))
	require.Equal(t, fluentd.Success, send(), "the rotated key")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	require.Equal(t, fluentd.Success, send(), "an empty file keeps the working key")
	require.NoError(t, os.Remove(file))
	require.Equal(t, fluentd.Success, send(), "so does a missing one")
}

// A message whose ack does not come (the connection closed after the
// message, or in the middle of it) is not delivered: the next Send goes on
// a fresh connection.
func TestForwardWithoutAnAckIsNotDelivered(t *testing.T) {
	rcv, pki := forwardReceiver(t, nil)
	url := rcv.ForwardURL() + "/test.log"
	s := forwardTransport(t, pki, fluentd.ForwardOptions{}).NewSender()
	defer s.Close()
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{DropAcks: 1, CloseMidMessage: 1})
	for i, want := range []fluentd.Class{fluentd.Retry, fluentd.Retry, fluentd.Success} {
		res := s.Send(context.Background(), url, [][]byte{[]byte(event)})
		require.Equal(t, want, res.Class, "send %d: %s", i+1, res.Reason)
	}
	require.Len(t, rcv.Records("test.log"), 2, "the dropped ack's message was stored: sent again, a duplicate")

	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{AckDelay: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := s.Send(ctx, url, [][]byte{[]byte(event)})
	require.Equal(t, fluentd.Retry, res.Class, "no ack within the deadline")
}

func TestForwardRejectsWhatIsNotAnEvent(t *testing.T) {
	rcv, pki := forwardReceiver(t, nil)
	s := forwardTransport(t, pki, fluentd.ForwardOptions{}).NewSender()
	defer s.Close()
	res := s.Send(context.Background(), rcv.ForwardURL()+"/x", [][]byte{[]byte(event), []byte(`[1]`)})
	require.Equal(t, fluentd.Permanent, res.Class)
	require.Contains(t, res.Reason, "event 2")
	require.Zero(t, rcv.Count())
}

// Connections that compress at the same time each send their own events:
// every event arrives once, none is replaced by another's. (The library's
// gzip helper hands back a buffer it has already returned to its pool, so
// a concurrent message could carry another one's events under its chunk.)
func TestForwardGzipFromManyConnectionsSendsEachItsOwnEvents(t *testing.T) {
	rcv, pki := forwardReceiver(t, nil)
	tr := forwardTransport(t, pki, fluentd.ForwardOptions{Gzip: true})
	url := rcv.ForwardURL() + "/test.log"
	const conns, batches, size = 8, 40, 50
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := tr.NewSender()
			defer s.Close()
			for b := range batches {
				evs := make([][]byte, size)
				for i := range evs {
					evs[i] = fmt.Appendf(nil, `{"uid":"%d-%d-%d","time":"2026-11-03T10:00:00Z","pad":"%0100d"}`, c, b, i, i)
				}
				if res := s.Send(context.Background(), url, evs); res.Class != fluentd.Success {
					t.Errorf("send: %s", res.Reason)
				}
			}
		}()
	}
	wg.Wait()
	got := rcv.CountByUID()
	require.Len(t, got, conns*batches*size, "every event arrives")
	for uid, n := range got {
		require.Equal(t, 1, n, "event %s", uid)
	}
}
