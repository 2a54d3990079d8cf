package syslog_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/syslog"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/rsyslogsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// fixture is a real rsyslogd with both inputs, and the client credentials
// it accepts.
type fixture struct {
	pki   *testpki.Bundle
	srv   *rsyslogsrv.Server
	creds *wire.Credentials
}

func newFixture(t *testing.T, maxMessage int) *fixture {
	t.Helper()
	pki := testpki.New(t)
	o := rsyslogsrv.PKIOptions(pki)
	o.MaxMessageSize = maxMessage
	srv := rsyslogsrv.Start(t, o)
	creds, err := wire.LoadCredentials(pki.FluentdCAFile, pki.FluentdClientCertFile, pki.FluentdClientKeyFile)
	require.NoError(t, err)
	return &fixture{pki: pki, srv: srv, creds: creds}
}

// messages are n distinct RFC 5424 messages with JSON bodies holding
// what a receiver might trip on.
func messages(from, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `<110>1 2026-12-08T04:05:06.%06dZ prod teleport - user.login [teleport@32473 uid="u%d" type="user.login" cluster="pr\"od\]"] {"i":%d,"s":"é \"q\" \\ ]"}`,
			from+i, from+i, from+i)
	}
	return out
}

func send(t *testing.T, s wire.Sender, url string, msgs [][]byte, batch int) {
	t.Helper()
	for len(msgs) > 0 {
		n := min(batch, len(msgs))
		res := s.Send(context.Background(), url, msgs[:n])
		require.Equal(t, wire.Success, res.Class, "%+v", res)
		msgs = msgs[n:]
	}
}

// lines are the messages rsyslog wrote for input, as received.
func lines(t *testing.T, srv *rsyslogsrv.Server, input string, n int) []string {
	t.Helper()
	srv.Await(t, input, n, 20*time.Second)
	got, err := srv.Lines(input)
	require.NoError(t, err)
	return got
}

func asStrings(msgs [][]byte) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m)
	}
	return out
}

func TestRELPDeliversEveryMessageToRsyslog(t *testing.T) {
	f := newFixture(t, 0)
	tr := syslog.NewRELP(f.creds, syslog.Options{})
	require.NoError(t, tr.Check(context.Background(), f.srv.RELPURL()))
	s := tr.NewSender()
	msgs := messages(0, 250)
	send(t, s, f.srv.RELPURL()+"/audit", msgs, 100)
	s.Close()
	require.Equal(t, asStrings(msgs), lines(t, f.srv, rsyslogsrv.RELP, len(msgs)), "each message once, in order, byte for byte")
}

func TestSyslogTLSDeliversEveryMessageToRsyslog(t *testing.T) {
	f := newFixture(t, 0)
	tr := syslog.NewTLS(f.creds, syslog.Options{Hold: 10 * time.Millisecond})
	require.NoError(t, tr.Check(context.Background(), f.srv.SyslogURL()))
	s := tr.NewSender()
	msgs := messages(0, 250)
	send(t, s, f.srv.SyslogURL(), msgs, 100)
	s.Close()
	require.Equal(t, asStrings(msgs), lines(t, f.srv, rsyslogsrv.Syslog, len(msgs)))
}

// A message at rsyslog's maxMessageSize arrives whole; one byte more is
// never sent (rsyslog would cut it, and over syslog+tls take the rest for
// a message of its own), but judged too large for the pool to dead-letter.
func TestMessagesUpToTheLimitArriveWholeAndLargerOnesAreNotSent(t *testing.T) {
	const limit = 2048
	f := newFixture(t, limit)
	for _, c := range []struct {
		url   string
		input string
		tr    wire.Transport
	}{
		{f.srv.RELPURL(), rsyslogsrv.RELP, syslog.NewRELP(f.creds, syslog.Options{MaxMessage: limit})},
		{f.srv.SyslogURL(), rsyslogsrv.Syslog, syslog.NewTLS(f.creds, syslog.Options{MaxMessage: limit, Hold: time.Millisecond})},
	} {
		s := c.tr.NewSender()
		head := messages(0, 1)[0]
		at := append(head[:len(head)-1:len(head)-1], []byte(`,"pad":"`+strings.Repeat("x", limit-len(head)-9)+`"}`)...)
		require.Len(t, at, limit)
		over := append([]byte(nil), at...)
		over = append(over[:len(over)-2], 'x', '"', '}')
		res := s.Send(context.Background(), c.url, [][]byte{at, over})
		require.Equal(t, wire.TooLarge, res.Class, c.url)
		require.Contains(t, res.Reason, "--syslog-max-message-kb")
		require.Equal(t, wire.Success, s.Send(context.Background(), c.url, [][]byte{at}).Class)
		s.Close()
		require.Equal(t, []string{string(at)}, lines(t, f.srv, c.input, 1), c.url)
	}
}

// Both inputs require a client certificate: a client without one is told
// so at start, a fatal *wire.TLSError, not an outage to wait out.
func TestAClientWithoutACertificateIsRefused(t *testing.T) {
	f := newFixture(t, 0)
	pool := x509.NewCertPool()
	pool.AddCert(f.pki.FluentdCA.Cert)
	anon := wire.FixedCredentials(pool, &tls.Certificate{})
	var tlsErr *wire.TLSError
	err := syslog.NewRELP(anon, syslog.Options{}).Check(context.Background(), f.srv.RELPURL())
	require.True(t, errors.As(err, &tlsErr), "%v", err)
	err = syslog.NewTLS(anon, syslog.Options{}).Check(context.Background(), f.srv.SyslogURL())
	require.True(t, errors.As(err, &tlsErr), "%v", err)
	var unreachable *wire.UnreachableError
	require.False(t, errors.As(err, &unreachable), "wire.WaitReady would wait on: %v", err)
}

// Each rsp code is judged as the HTTP status of the same number; the
// session outlives an answer other than 200.
func TestRELPAnswersAreJudgedAsHTTPStatuses(t *testing.T) {
	pki := testpki.New(t)
	peer := rsyslogsrv.StartScriptedRELP(t, pki.ServerTLS(pki.FluentdServer, pki.FluentdCA))
	creds, err := wire.LoadCredentials(pki.FluentdCAFile, pki.FluentdClientCertFile, pki.FluentdClientKeyFile)
	require.NoError(t, err)
	s := syslog.NewRELP(creds, syslog.Options{}).NewSender()
	defer s.Close()
	msgs := messages(0, 3)
	for _, c := range []struct {
		code int
		want wire.Class
	}{{500, wire.Retry}, {503, wire.Retry}, {400, wire.Permanent}, {403, wire.Refused}, {200, wire.Success}} {
		peer.SetAnswer(c.code, "scripted")
		res := s.Send(context.Background(), peer.URL(), msgs)
		require.Equal(t, c.want, res.Class, "rsp %d: %+v", c.code, res)
		require.Equal(t, c.code, res.Status)
		if c.code != 200 {
			require.Contains(t, res.Reason, fmt.Sprintf("rsp %d scripted", c.code))
		}
	}
	require.Equal(t, 1, peer.Opens(), "one session throughout")
	require.Equal(t, asStrings(msgs), peer.Messages())
	require.NoError(t, peer.Err())
}

// A RELP server going away (serverclose, or the connection cut) fails the
// batch for a retry, which opens a new session.
func TestRELPRetriesOnANewSessionAfterTheServerLeft(t *testing.T) {
	f := newFixture(t, 0)
	s := syslog.NewRELP(f.creds, syslog.Options{AckWait: 5 * time.Second}).NewSender()
	defer s.Close()
	send(t, s, f.srv.RELPURL(), messages(0, 10), 10)
	f.srv.Restart(t)
	var res wire.Result
	for range 3 { // the first send may still meet the old session
		if res = s.Send(context.Background(), f.srv.RELPURL(), messages(10, 10)); res.Class == wire.Success {
			break
		}
		require.Equal(t, wire.Retry, res.Class, "%+v", res)
	}
	require.Equal(t, wire.Success, res.Class, "%+v", res)
	got := lines(t, f.srv, rsyslogsrv.RELP, 20)
	require.Subset(t, got, asStrings(messages(0, 20)))
}

// Over syslog+tls the messages written since the connection was last known
// healthy are written again on the next connection after a break: a
// receiver restarted between two sends loses nothing of the first.
func TestSyslogTLSResendsWhatWasNotKnownReceivedAfterABreak(t *testing.T) {
	f := newFixture(t, 0)
	var resent atomic.Int64
	tr := syslog.NewTLS(f.creds, syslog.Options{Hold: time.Minute, OnResend: func(_ string, n int) { resent.Add(int64(n)) }})
	s := tr.NewSender()
	first, second := messages(0, 50), messages(50, 50)
	send(t, s, f.srv.SyslogURL(), first, 50)
	f.srv.Restart(t)
	require.Eventually(t, func() bool {
		return s.Send(context.Background(), f.srv.SyslogURL(), second).Class == wire.Success
	}, 20*time.Second, 50*time.Millisecond)
	s.Close()
	got := lines(t, f.srv, rsyslogsrv.Syslog, 100)
	require.Subset(t, got, asStrings(append(first, second...)), "nothing lost, duplicates allowed")
	require.EqualValues(t, 50, resent.Load(), "the first batch was still held, and written again")
}

// No more than Unconfirmed messages are held: a send past it waits for the
// oldest to be known received, and fails for a retry when they are not
// within AckWait.
func TestSyslogTLSHoldsAtMostUnconfirmedMessages(t *testing.T) {
	f := newFixture(t, 0)
	var resent atomic.Int64
	tr := syslog.NewTLS(f.creds, syslog.Options{Hold: time.Minute, Unconfirmed: 20, AckWait: 300 * time.Millisecond,
		OnResend: func(_ string, n int) { resent.Add(int64(n)) }})
	s := tr.NewSender()
	defer s.Close()
	require.Equal(t, wire.Success, s.Send(context.Background(), f.srv.SyslogURL(), messages(0, 20)).Class)
	res := s.Send(context.Background(), f.srv.SyslogURL(), messages(20, 5))
	require.Equal(t, wire.Retry, res.Class)
	require.Contains(t, res.Reason, "not known received")
	res = s.Send(context.Background(), f.srv.SyslogURL(), messages(20, 5))
	require.Equal(t, wire.Retry, res.Class, "still over the bound")
	require.EqualValues(t, 20, resent.Load(), "the failed batch is the pool's to send again, not held twice")

	short := syslog.NewTLS(f.creds, syslog.Options{Hold: 50 * time.Millisecond, Unconfirmed: 20}).NewSender()
	defer short.Close()
	for i := range 5 {
		require.Equal(t, wire.Success, short.Send(context.Background(), f.srv.SyslogURL(), messages(100+20*i, 20)).Class,
			"with a short hold, the oldest are let go of and sends go on")
	}
}
