package rsyslogsrv

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/commands/configure/certs"
)

const awaitTimeout = 15 * time.Second

// What the daemon sends: a private SD-ID with every escape, a JSON body
// with quotes, backslashes, ']' and any UTF-8.
const (
	fullMsg = `<110>1 2024-05-06T07:08:09.123000Z teleport.example.com teleport-event-handler 4242 user.login ` +
		`[teleport@64111 uid="a\"b\\c\]d" path="C:\\x" ei="7"][origin ip="127.0.0.1"] ` +
		`{"code":"T1000I","user":"al\"ice","path":"C:\\x]","s":"é € 😀","ctl":"\t\u0001"}`
	bomMsg    = "<86>1 2024-05-06T07:08:09.1+02:00 h app - - - \ufeff{\"bom\":true}"
	spaceMsg  = `<110>1 2024-05-06T07:08:09.120-05:30 h app - ID1 -  {"leading":"space"}`
	nilMsg    = `<0>1 - - - - - -`
	sixMsg    = `<191>1 2024-05-06T07:08:09.000001Z h a p m - {}`
	tabMsg    = "<110>1 2024-05-06T07:08:09Z h app - - - {\"raw\":\"a\tb\x01c\x7fd\ne\"}\n"
	tabStored = "<110>1 2024-05-06T07:08:09Z h app - - - {\"raw\":\"a#011b#001c\x7fd#012e\"}"
)

func TestSyslogOverTLSArrivesAsSent(t *testing.T) {
	srv, pki := start(t, Options{})
	require.Equal(t, "syslog+tls://"+srv.SyslogAddr(), srv.SyslogURL())
	require.True(t, strings.HasPrefix(srv.SyslogAddr(), "127.0.0.1:"))
	sent := []string{fullMsg, bomMsg, spaceMsg, nilMsg, sixMsg, tabMsg}
	sendSyslog(t, srv.SyslogAddr(), clientTLS(t, pki, pki.FluentdClient), sent...)

	msgs := srv.Await(t, Syslog, len(sent), awaitTimeout)
	lines, err := srv.Lines(Syslog)
	require.NoError(t, err)
	// Byte-exact, but for the raw control characters of tabMsg, which
	// rsyslog escapes as #ooo (DEL passes), and its trailing line feed,
	// which it drops.
	want := append(sent[:len(sent)-1:len(sent)-1], tabStored)
	require.Equal(t, want, lines)
	for i, line := range want {
		require.Equal(t, mustParse(t, line), msgs[i])
	}

	full := msgs[0]
	require.Equal(t, 110, full.PRI)
	require.Equal(t, 13, full.Facility)
	require.Equal(t, 6, full.Severity)
	require.Equal(t, "2024-05-06T07:08:09.123000Z", full.Timestamp)
	require.Equal(t, map[string]map[string]string{
		"teleport@64111": {"uid": `a"b\c]d`, "path": `C:\x`, "ei": "7"},
		"origin":         {"ip": "127.0.0.1"},
	}, full.SD)
	require.Equal(t, `{"code":"T1000I","user":"al\"ice","path":"C:\\x]","s":"é € 😀","ctl":"\t\u0001"}`, full.Msg)

	require.Equal(t, "2024-05-06T07:08:09.1+02:00", msgs[1].Timestamp)
	require.True(t, msgs[1].BOM)
	require.Equal(t, `{"bom":true}`, msgs[1].Msg)
	require.Equal(t, "2024-05-06T07:08:09.120-05:30", msgs[2].Timestamp)
	require.Equal(t, ` {"leading":"space"}`, msgs[2].Msg)
	require.Equal(t, Message{Timestamp: "-", Hostname: "-", AppName: "-", ProcID: "-", MsgID: "-", SDRaw: "-", Version: 1}, msgs[3])
	require.Equal(t, "2024-05-06T07:08:09.000001Z", msgs[4].Timestamp)
}

func TestRELPSessionWithAWindow(t *testing.T) {
	srv, pki := start(t, Options{})
	require.Equal(t, "relp+tls://"+srv.RELPAddr(), srv.RELPURL())
	c := dialRELP(t, srv.RELPAddr(), clientTLS(t, pki, pki.FluentdClient))
	offers := c.open(t)
	require.Contains(t, strings.Split(offers, "\n"), "commands=syslog")
	require.Contains(t, strings.Split(offers, "\n"), "relp_version=0")

	sent := []string{fullMsg, bomMsg, spaceMsg}
	c.send(t,
		frame{txnr: 2, cmd: "syslog", data: []byte(sent[0])},
		frame{txnr: 3, cmd: "syslog", data: []byte(sent[1])},
		frame{txnr: 4, cmd: "syslog", data: []byte(sent[2])})
	for txnr := 2; txnr <= 4; txnr++ {
		require.Equal(t, fmt.Sprintf(`%d rsp "200 OK"`, txnr), c.recv(t).String())
	}
	// librelp answers close without data (no "200 OK"), then sends
	// serverclose and ends the connection.
	c.send(t, frame{txnr: 5, cmd: "close"})
	require.Equal(t, `5 rsp ""`, c.recv(t).String())
	require.Equal(t, serverclose.String(), c.recv(t).String())
	c.requireEnd(t)

	msgs := srv.Await(t, RELP, len(sent), awaitTimeout)
	lines, err := srv.Lines(RELP)
	require.NoError(t, err)
	require.Equal(t, sent, lines)
	for i, line := range sent {
		require.Equal(t, mustParse(t, line), msgs[i])
	}
	require.Equal(t, `a"b\c]d`, msgs[0].SD["teleport@64111"]["uid"])
}

// A client without a certificate, or with one of another CA, is refused
// by both inputs: the connection ends without an answer, what it sent is
// not stored while what a good client sends after it is, and rsyslogd
// logs why.
func TestClientsWithoutAValidCertificateAreRefused(t *testing.T) {
	srv, pki := start(t, Options{})
	other, err := certs.NewCA("Unrelated test CA", certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	otherClient, err := certs.IssueClient(other, "intruder", certs.Options{KeyType: certs.ECDSA})
	require.NoError(t, err)
	good := clientTLS(t, pki, pki.FluentdClient)

	stored := 0
	for _, bad := range []struct {
		name      string
		cfg       *tls.Config
		syslogLog string
		relpLog   string
	}{
		{"no certificate", clientTLS(t, pki, nil), "peer did not provide a certificate, not permitted to talk to it",
			fmt.Sprintf("imrelp[%d]: error 'relpTcpLastSSLErrorMsg: OpenSSL Error Stack: error:0A0000C7:SSL routines::peer did not return a certificate", srv.ports[RELP])},
		{"another CA", clientTLS(t, pki, otherClient), "not permitted to talk to peer, certificate invalid: signer not found",
			fmt.Sprintf("imrelp[%d]: authentication error 'Certificate error in verify_callback at depth: 0   issuer  = /CN=Unrelated test CA", srv.ports[RELP])},
	} {
		t.Run(bad.name, func(t *testing.T) {
			refused := fmt.Sprintf(`<110>1 - - - - - - {"refused":%q}`, bad.name)
			accepted := fmt.Sprintf(`<110>1 - - - - - - {"accepted":%q}`, bad.name)

			c, err := dialTLS(t, srv.SyslogAddr(), bad.cfg)
			if err == nil { // TLS 1.3: the refusal comes after the handshake
				c.SetWriteDeadline(time.Now().Add(ioTimeout))
				c.Write(octets(refused))
				requireClosed(t, c)
			}
			sendSyslog(t, srv.SyslogAddr(), good, accepted)
			stored++
			lines := awaitLines(t, srv, Syslog, stored)
			require.Equal(t, accepted, lines[len(lines)-1])
			require.NotContains(t, lines, refused)
			awaitLog(t, srv, bad.syslogLog)

			c, err = dialTLS(t, srv.RELPAddr(), bad.cfg)
			if err == nil {
				c.SetWriteDeadline(time.Now().Add(ioTimeout))
				c.Write(appendFrame(nil, frame{txnr: 1, cmd: "open", data: []byte(clientOffers)}))
				requireClosed(t, c)
			}
			rc := dialRELP(t, srv.RELPAddr(), good)
			rc.open(t)
			rc.send(t, frame{txnr: 2, cmd: "syslog", data: []byte(accepted)})
			require.Equal(t, `2 rsp "200 OK"`, rc.recv(t).String())
			lines = awaitLines(t, srv, RELP, stored)
			require.Equal(t, accepted, lines[len(lines)-1])
			awaitLog(t, srv, bad.relpLog)
		})
	}
}

// awaitLines waits until input has n lines, and returns them, parsed or
// not.
func awaitLines(t *testing.T, s *Server, input string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(awaitTimeout)
	for {
		lines, err := s.Lines(input)
		require.NoError(t, err)
		if len(lines) >= n {
			require.Len(t, lines, n, "more lines than expected")
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s lines after %v, want %d: %q", len(lines), input, awaitTimeout, n, lines)
		}
		time.Sleep(pollInterval)
	}
}

func TestRestartKeepsPortsAndFiles(t *testing.T) {
	srv, pki := start(t, Options{})
	cfg := clientTLS(t, pki, pki.FluentdClient)
	syslogAddr, relpAddr, pid := srv.SyslogAddr(), srv.RELPAddr(), srv.Pid()
	sendSyslog(t, syslogAddr, cfg, sixMsg)
	srv.Await(t, Syslog, 1, awaitTimeout)

	// rsyslogd stopped with SIGTERM ends a RELP session with serverclose;
	// a frame it has only part of is dropped, unanswered.
	c := dialRELP(t, relpAddr, cfg)
	c.open(t)
	c.send(t, frame{txnr: 2, cmd: "syslog", data: []byte(nilMsg)})
	require.Equal(t, `2 rsp "200 OK"`, c.recv(t).String())
	partial := appendFrame(nil, frame{txnr: 3, cmd: "syslog", data: []byte(spaceMsg)})
	c.c.Write(partial[:len(partial)/2])
	srv.Restart(t)
	require.Equal(t, serverclose.String(), c.recv(t).String())
	c.requireEnd(t)

	require.NotEqual(t, pid, srv.Pid())
	require.Equal(t, syslogAddr, srv.SyslogAddr())
	require.Equal(t, relpAddr, srv.RELPAddr())
	sendSyslog(t, syslogAddr, cfg, bomMsg)
	c = dialRELP(t, relpAddr, cfg)
	c.open(t)
	c.send(t, frame{txnr: 2, cmd: "syslog", data: []byte(bomMsg)})
	require.Equal(t, `2 rsp "200 OK"`, c.recv(t).String())

	syslogMsgs := srv.Await(t, Syslog, 2, awaitTimeout)
	require.Equal(t, []Message{mustParse(t, sixMsg), mustParse(t, bomMsg)}, syslogMsgs)
	relpMsgs := srv.Await(t, RELP, 2, awaitTimeout)
	require.Equal(t, []Message{mustParse(t, nilMsg), mustParse(t, bomMsg)}, relpMsgs)
}

// Kill is a crash: sessions end without serverclose; Restart starts
// rsyslogd again although its pid file is left.
func TestKillAndStartAgain(t *testing.T) {
	srv, pki := start(t, Options{})
	cfg := clientTLS(t, pki, pki.FluentdClient)
	c := dialRELP(t, srv.RELPAddr(), cfg)
	c.open(t)
	srv.Kill(t)
	require.Zero(t, srv.Pid())
	c.requireEnd(t)
	_, err := os.Stat(srv.pidFile)
	require.NoError(t, err, "rsyslogd killed leaves its pid file")

	srv.Restart(t)
	require.NotZero(t, srv.Pid())
	sendSyslog(t, srv.SyslogAddr(), cfg, sixMsg)
	require.Equal(t, []Message{mustParse(t, sixMsg)}, srv.Await(t, Syslog, 1, awaitTimeout))
	srv.Stop()
	srv.Stop()
	require.Zero(t, srv.Pid())
}

// A message longer than maxMessageSize is cut: imtcp makes a message of
// the rest but its first byte, imrelp drops the rest and answers 200 all
// the same.
func TestMaxMessageSizeCutsLongMessages(t *testing.T) {
	const max = 1024
	srv, pki := start(t, Options{MaxMessageSize: max})
	cfg := clientTLS(t, pki, pki.FluentdClient)
	long := `<110>1 2024-05-06T07:08:09Z h app - - - {"pad":"` + strings.Repeat("x", 1500) + `"}`
	fits := `<110>1 2024-05-06T07:08:09Z h app - - - {"pad":"` + strings.Repeat("y", max-len(long)+1500) + `"}`
	require.Len(t, fits, max)

	sendSyslog(t, srv.SyslogAddr(), cfg, long, fits)
	require.Equal(t, []string{long[:max], long[max+1:], fits}, awaitLines(t, srv, Syslog, 3))
	awaitLog(t, srv, "received oversize message from peer")

	c := dialRELP(t, srv.RELPAddr(), cfg)
	c.open(t)
	c.send(t, frame{txnr: 2, cmd: "syslog", data: []byte(long)}, frame{txnr: 3, cmd: "syslog", data: []byte(fits)})
	require.Equal(t, `2 rsp "200 OK"`, c.recv(t).String())
	require.Equal(t, `3 rsp "200 OK"`, c.recv(t).String())
	require.Equal(t, []string{long[:max], fits}, awaitLines(t, srv, RELP, 2))
	awaitLog(t, srv, "frame too long")
}

func TestDiskQueue(t *testing.T) {
	srv, pki := start(t, Options{DiskQueue: true})
	conf, err := os.ReadFile(srv.conf)
	require.NoError(t, err)
	require.Contains(t, string(conf), `queue.filename="teh_relp" queue.saveOnShutdown="on"`)
	cfg := clientTLS(t, pki, pki.FluentdClient)
	for i, msg := range []string{sixMsg, bomMsg} {
		if i > 0 {
			srv.Restart(t)
		}
		c := dialRELP(t, srv.RELPAddr(), cfg)
		c.open(t)
		c.send(t, frame{txnr: 2, cmd: "syslog", data: []byte(msg)})
		require.Equal(t, `2 rsp "200 OK"`, c.recv(t).String())
		require.Equal(t, mustParse(t, msg), srv.Await(t, RELP, i+1, awaitTimeout)[i])
	}
}

// A port another process took between the choice and rsyslogd's bind is
// seen at once (Start then picks other ports), whether the other listens
// on 127.0.0.1 or on every address.
func TestPortTakenIsSeen(t *testing.T) {
	srv, _ := start(t, Options{})
	for _, addr := range []string{srv.RELPAddr(), fmt.Sprintf("[::]:%d", srv.ports[Syslog])} {
		srv.Stop()
		ln, err := net.Listen("tcp", addr)
		if err != nil && strings.HasPrefix(addr, "[") {
			continue // no IPv6 here
		}
		require.NoError(t, err)
		begin := time.Now()
		err = srv.start()
		ln.Close()
		require.ErrorIs(t, err, errPortTaken)
		require.Less(t, time.Since(begin), readyTimeout/2)
		require.Zero(t, srv.Pid())
		srv.Restart(t)
	}
}
