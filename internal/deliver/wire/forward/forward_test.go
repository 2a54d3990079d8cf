package forward_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"github.com/tinylib/msgp/msgp"
	"go.uber.org/goleak"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/forward"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func forwardReceiver(t *testing.T, key []byte) (*fluentdsrv.Receiver, *testpki.Bundle) {
	t.Helper()
	pki := testpki.New(t)
	rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA), SharedKey: key})
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	return rcv, pki
}

func forwardTransport(t *testing.T, pki *testpki.Bundle, opts forward.Options) *forward.Transport {
	t.Helper()
	cfg, err := wire.LoadCredentials(pki.FluentdCAFile, pki.FluentdClientCertFile, pki.FluentdClientKeyFile)
	require.NoError(t, err)
	if opts.Hostname == "" {
		opts.Hostname = "test"
	}
	return forward.New(cfg, opts)
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
		tr := forwardTransport(t, pki, forward.Options{Gzip: gzip})
		require.NoError(t, tr.Check(context.Background(), rcv.ForwardURL()+"/test.log"))
		s := tr.NewSender()
		res := s.Send(context.Background(), rcv.ForwardURL()+"/audit/events", [][]byte{[]byte(event), []byte(event)})
		require.Equal(t, wire.Success, res.Class, res.Reason)
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
	ok := forwardTransport(t, pki, forward.Options{SharedKey: []byte("s3cret")})
	require.NoError(t, ok.Check(context.Background(), url))
	s := ok.NewSender()
	defer s.Close()
	require.Equal(t, wire.Success, s.Send(context.Background(), url, [][]byte{[]byte(event)}).Class)

	var auth *forward.AuthError
	wrong := forwardTransport(t, pki, forward.Options{SharedKey: []byte("guess")})
	err := wrong.Check(context.Background(), url)
	require.ErrorAs(t, err, &auth)
	require.Contains(t, err.Error(), "shared_key mismatch", "the server's reason")
	ws := wrong.NewSender()
	defer ws.Close()
	res := ws.Send(context.Background(), url, [][]byte{[]byte(event)})
	require.Equal(t, wire.Refused, res.Class, "a refused key is never a dead letter")

	none := forwardTransport(t, pki, forward.Options{})
	require.ErrorAs(t, none.Check(context.Background(), url), &auth)
	require.Contains(t, none.Check(context.Background(), url).Error(), "--fluentd-shared-key")

	plain, pki2 := forwardReceiver(t, nil)
	silent := forwardTransport(t, pki2, forward.Options{SharedKey: []byte("s3cret")})
	silent.SetHeloWait(100 * time.Millisecond)
	var unreachable *wire.UnreachableError
	require.ErrorAs(t, silent.Check(context.Background(), plain.ForwardURL()+"/x"), &unreachable, "once may be a slow Fluentd")
	err = silent.Check(context.Background(), plain.ForwardURL()+"/x")
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
	f := forwardTransport(t, pki, forward.Options{SharedKey: []byte("first"), SharedKeyFile: file})
	send := func() wire.Class {
		s := f.NewSender() // a fresh connection each time
		defer s.Close()
		return s.Send(context.Background(), url, [][]byte{[]byte(event)}).Class
	}
	require.Equal(t, wire.Success, send())

	rcv.SetSharedKey([]byte("second"))
	require.Equal(t, wire.Refused, send(), "the old key")
	require.NoError(t, os.WriteFile(file, []byte("second\n"), 0o600))
	require.Equal(t, wire.Success, send(), "the rotated key")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	require.Equal(t, wire.Success, send(), "an empty file keeps the working key")
	require.NoError(t, os.Remove(file))
	require.Equal(t, wire.Success, send(), "so does a missing one")
}

// A message whose ack does not come (the connection closed after the
// message, or in the middle of it) is not delivered: the next Send goes on
// a fresh connection.
func TestForwardWithoutAnAckIsNotDelivered(t *testing.T) {
	rcv, pki := forwardReceiver(t, nil)
	url := rcv.ForwardURL() + "/test.log"
	s := forwardTransport(t, pki, forward.Options{}).NewSender()
	defer s.Close()
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{DropAcks: 1, CloseMidMessage: 1})
	for i, want := range []wire.Class{wire.Retry, wire.Retry, wire.Success} {
		res := s.Send(context.Background(), url, [][]byte{[]byte(event)})
		require.Equal(t, want, res.Class, "send %d: %s", i+1, res.Reason)
	}
	require.Len(t, rcv.Records("test.log"), 2, "the dropped ack's message was stored: sent again, a duplicate")

	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{AckDelay: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := s.Send(ctx, url, [][]byte{[]byte(event)})
	require.Equal(t, wire.Retry, res.Class, "no ack within the deadline")
}

// in_forward drops a message over its chunk_size_limit without an answer:
// the send says so (NoAck), within AckWait rather than the 30 s of a
// request; a message over MaxMessage is not sent at all (TooLarge).
func TestForwardTellsAnUnansweredMessageAndOneTooLarge(t *testing.T) {
	rcv, pki := forwardReceiver(t, nil)
	url := rcv.ForwardURL() + "/test.log"
	tr := forwardTransport(t, pki, forward.Options{AckWait: 300 * time.Millisecond})
	s := tr.NewSender()
	defer s.Close()
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{ChunkSizeLimit: 500})
	batch := [][]byte{[]byte(event), []byte(event), []byte(event), []byte(event), []byte(event)}
	began := time.Now()
	res := s.Send(context.Background(), url, batch)
	require.Equal(t, wire.Retry, res.Class, res.Reason)
	require.True(t, res.NoAck, res.Reason)
	require.Less(t, time.Since(began), 5*time.Second)
	require.Equal(t, 1, rcv.ForwardDropped())
	res = s.Send(context.Background(), url, batch[:1])
	require.Equal(t, wire.Success, res.Class, "a smaller message on the same connection: %s", res.Reason)
	require.Len(t, rcv.Records("test.log"), 1)

	// A connection closed is not an unanswered message.
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{DropAcks: 1})
	res = s.Send(context.Background(), url, batch[:1])
	require.Equal(t, wire.Retry, res.Class)
	require.False(t, res.NoAck, res.Reason)
	// Nor is a stop.
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{AckNothing: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res = s.Send(ctx, url, batch[:1])
	require.Equal(t, wire.Retry, res.Class)
	require.False(t, res.NoAck, res.Reason)

	limited := forwardTransport(t, pki, forward.Options{MaxMessage: 500}).NewSender()
	defer limited.Close()
	res = limited.Send(context.Background(), url, batch)
	require.Equal(t, wire.TooLarge, res.Class, res.Reason)
	require.Contains(t, res.Reason, "--fluentd-max-message-kb")
	require.Equal(t, 2, rcv.ForwardDropped(), "nothing sent")
}

func TestForwardRejectsWhatIsNotAnEvent(t *testing.T) {
	rcv, pki := forwardReceiver(t, nil)
	s := forwardTransport(t, pki, forward.Options{}).NewSender()
	defer s.Close()
	res := s.Send(context.Background(), rcv.ForwardURL()+"/x", [][]byte{[]byte(event), []byte(`[1]`)})
	require.Equal(t, wire.Permanent, res.Class)
	require.Contains(t, res.Reason, "event 2")
	require.Zero(t, rcv.Count())
}

// Connections that compress at the same time each send their own events:
// every event arrives once, none is replaced by another's. (The library's
// gzip helper hands back a buffer it has already returned to its pool, so
// a concurrent message could carry another one's events under its chunk.)
func TestForwardGzipFromManyConnectionsSendsEachItsOwnEvents(t *testing.T) {
	rcv, pki := forwardReceiver(t, nil)
	tr := forwardTransport(t, pki, forward.Options{Gzip: true})
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
				if res := s.Send(context.Background(), url, evs); res.Class != wire.Success {
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

// rawForward is a forward server on 127.0.0.1, with the TLS of the test
// receiver, that runs script on each connection: a server that says what
// no Fluentd says. Its goroutines end with the test.
func rawForward(t *testing.T, script func(c *tls.Conn, rd *msgp.Reader, w *msgp.Writer)) (string, *testpki.Bundle) {
	t.Helper()
	pki := testpki.New(t)
	cfg := pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)
	cfg.MaxVersion = tls.VersionTLS12
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				c := tls.Server(nc, cfg)
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				script(c, msgp.NewReader(c), msgp.NewWriter(c))
				_, _ = io.Copy(io.Discard, c) // until the client hangs up
			})
		}
	})
	return "forward://" + ln.Addr().String() + "/test.log", pki
}

// gib is the header of a msgpack str or bin (lead) announcing 1 GiB.
func gib(lead byte) []byte { return []byte{lead, 0x40, 0, 0, 0} }

// helo is a HELO asking for the shared key, with keepalive.
func helo(w *msgp.Writer) []byte {
	h := protocol.NewHelo(&protocol.HeloOpts{Nonce: []byte("0123456789abcdef"), Auth: []byte{}, Keepalive: true})
	_ = h.EncodeMsg(w)
	_ = w.Flush()
	return h.Options.Nonce
}

// allocated is the memory f allocates, with what runs meanwhile.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A length the server announces is checked before anything is allocated
// for it: a HELO nonce, a PONG reason or an ack of 1 GiB fails the
// connection at once, with a message that says why, and costs next to
// nothing (it cost 1 GiB, and then the wait for bytes that never came).
// So does a message that holds more than the bound in fields the decoder
// skips.
func TestForwardBoundsWhatTheServerSends(t *testing.T) {
	const most = 1 << 20
	heloNonce := func(c *tls.Conn, _ *msgp.Reader, _ *msgp.Writer) {
		msg := append([]byte{0x92, 0xa4, 'H', 'E', 'L', 'O', 0x81, 0xa5, 'n', 'o', 'n', 'c', 'e'}, gib(0xc6)...)
		_, _ = c.Write(msg)
	}
	heloPadding := func(c *tls.Conn, _ *msgp.Reader, _ *msgp.Writer) { // sent in full, skipped unread
		msg := []byte{0x92, 0xa4, 'H', 'E', 'L', 'O', 0x82, 0xa3, 'p', 'a', 'd', 0xc6, 0, 1, 0, 0}
		msg = append(msg, make([]byte, 1<<16)...)
		msg = append(msg, 0xa5, 'n', 'o', 'n', 'c', 'e', 0xc4, 16)
		_, _ = c.Write(append(msg, "0123456789abcdef"...))
	}
	pongReason := func(c *tls.Conn, rd *msgp.Reader, w *msgp.Writer) {
		helo(w)
		var ping protocol.Ping
		if ping.DecodeMsg(rd) == nil {
			_, _ = c.Write(append([]byte{0x95, 0xa4, 'P', 'O', 'N', 'G', 0xc3}, gib(0xdb)...))
		}
	}
	ack := func(c *tls.Conn, rd *msgp.Reader, _ *msgp.Writer) {
		if _, err := rd.CopyNext(io.Discard); err == nil {
			_, _ = c.Write(append([]byte{0x81, 0xa3, 'a', 'c', 'k'}, gib(0xdb)...))
		}
	}
	for name, tc := range map[string]struct {
		script func(*tls.Conn, *msgp.Reader, *msgp.Writer)
		key    []byte
	}{"HELO nonce": {heloNonce, []byte("k")}, "HELO padding": {heloPadding, []byte("k")}, "PONG reason": {pongReason, []byte("k")}, "ack": {ack, nil}} {
		t.Run(name, func(t *testing.T) {
			url, pki := rawForward(t, tc.script)
			s := forwardTransport(t, pki, forward.Options{SharedKey: tc.key}).NewSender()
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var res wire.Result
			start := time.Now()
			n := allocated(func() { res = s.Send(ctx, url, [][]byte{[]byte(event)}) })
			require.Less(t, n, uint64(most), "bytes allocated: %s", res.Reason)
			require.Less(t, time.Since(start), 2*time.Second, "fails at the header, not at a deadline: %s", res.Reason)
			require.NotEqual(t, wire.Success, res.Class)
			require.Contains(t, res.Reason, "more than 4096 bytes")
		})
	}
}

// A server that echoes the daemon's PING (its hostname and digest) passes
// the digest check without knowing the key: a PONG naming the daemon's own
// hostname is refused, as Fluentd's out_forward refuses it.
func TestForwardRefusesAnEchoedPong(t *testing.T) {
	rcv, pki := forwardReceiver(t, []byte("s3cret"))
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{EchoPong: true})
	url := rcv.ForwardURL() + "/test.log"
	tr := forwardTransport(t, pki, forward.Options{SharedKey: []byte("guess")})
	var auth *forward.AuthError
	err := tr.Check(context.Background(), url)
	require.ErrorAs(t, err, &auth)
	require.Contains(t, err.Error(), `names this daemon's own hostname "test"`)
	s := tr.NewSender()
	defer s.Close()
	require.Equal(t, wire.Refused, s.Send(context.Background(), url, [][]byte{[]byte(event)}).Class)
	require.Zero(t, rcv.Count())
}

// A HELO with keepalive false (in_forward's deny_keepalive) means a
// connection per message: every send succeeds at the first try, each on a
// connection of its own with its own handshake.
func TestForwardHonoursKeepaliveFalse(t *testing.T) {
	rcv, pki := forwardReceiver(t, []byte("s3cret"))
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{NoKeepalive: true})
	url := rcv.ForwardURL() + "/test.log"
	s := forwardTransport(t, pki, forward.Options{SharedKey: []byte("s3cret")}).NewSender()
	defer s.Close()
	const n = 5
	for i := range n {
		res := s.Send(context.Background(), url, [][]byte{[]byte(event)})
		require.Equal(t, wire.Success, res.Class, "send %d: %s", i+1, res.Reason)
	}
	require.Len(t, rcv.Records("test.log"), n, "no duplicates: nothing was sent twice")
	require.Equal(t, n, rcv.ForwardHandshakes())
}

// A HELO later than the old fixed wait but within the transport's wait is
// a slow Fluentd, not a missing <security> section.
func TestForwardWaitsForASlowHelo(t *testing.T) {
	rcv, pki := forwardReceiver(t, []byte("s3cret"))
	rcv.SetForwardFaults(fluentdsrv.ForwardFaults{HeloDelay: 300 * time.Millisecond})
	url := rcv.ForwardURL() + "/test.log"
	tr := forwardTransport(t, pki, forward.Options{SharedKey: []byte("s3cret")})
	tr.SetHeloWait(time.Second)
	require.NoError(t, tr.Check(context.Background(), url))
	s := tr.NewSender()
	defer s.Close()
	require.Equal(t, wire.Success, s.Send(context.Background(), url, [][]byte{[]byte(event)}).Class)
}

// One connection silent for the whole wait is retried (a busy Fluentd);
// two in a row to the same address are an in_forward without <security>,
// which the start reports (WaitReady) and the sender calls a refusal. A
// HELO in between starts the count again.
func TestForwardTellsASilentServerFromASlowOne(t *testing.T) {
	const wait = 300 * time.Millisecond
	var unreachable *wire.UnreachableError
	var auth *forward.AuthError
	key := forward.Options{SharedKey: []byte("s3cret")}

	slow, pki := forwardReceiver(t, []byte("s3cret"))
	url := slow.ForwardURL() + "/test.log"
	tr := forwardTransport(t, pki, key)
	tr.SetHeloWait(wait)
	slow.SetForwardFaults(fluentdsrv.ForwardFaults{HeloDelay: 2 * wait})
	err := tr.Check(context.Background(), url)
	require.ErrorAs(t, err, &unreachable, "one silent connection: %v", err)
	require.Contains(t, err.Error(), "no HELO within 300ms")
	slow.SetForwardFaults(fluentdsrv.ForwardFaults{})
	require.NoError(t, tr.Check(context.Background(), url))
	slow.SetForwardFaults(fluentdsrv.ForwardFaults{HeloDelay: 2 * wait})
	require.ErrorAs(t, tr.Check(context.Background(), url), &unreachable, "the HELO in between reset the count")

	plain, pki := forwardReceiver(t, nil)
	url = plain.ForwardURL() + "/test.log"
	tr = forwardTransport(t, pki, key)
	tr.SetHeloWait(wait)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = wire.WaitReady(ctx, tr, url, zerolog.Nop())
	require.ErrorAs(t, err, &auth, "%v", err)
	require.Contains(t, err.Error(), "no <security> section")

	tr = forwardTransport(t, pki, key)
	tr.SetHeloWait(wait)
	s := tr.NewSender()
	defer s.Close()
	for i, want := range []wire.Class{wire.Retry, wire.Refused} {
		res := s.Send(context.Background(), url, [][]byte{[]byte(event)})
		require.Equal(t, want, res.Class, "send %d: %s", i+1, res.Reason)
	}
}
