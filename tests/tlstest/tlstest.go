// Package tlstest runs TLS handshakes over loopback for tests of
// certificates.
package tlstest

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// Handshake connects a client to a server over 127.0.0.1 and returns the
// common name of the client certificate the server saw. It fails if either
// side refuses the other, including a server refusing the client certificate
// after a TLS 1.3 handshake; every step has a deadline.
func Handshake(server, client *tls.Config) (string, error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	type result struct {
		cn  string
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			done <- result{err: err}
			return
		}
		var cn string
		if peers := tc.ConnectionState().PeerCertificates; len(peers) > 0 {
			cn = peers[0].Subject.CommonName
		}
		_, err = tc.Write([]byte("ok"))
		done <- result{cn: cn, err: err}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		// TLS 1.3 reports a refused client certificate on the first read.
		_, err = io.ReadFull(c, make([]byte, 2))
		c.Close()
	}
	select {
	case r := <-done:
		if err == nil {
			err = r.err
		}
		return r.cn, err
	case <-time.After(10 * time.Second):
		return "", errors.New("tlstest: handshake did not finish within 10s")
	}
}
