package syslog

import (
	"crypto/tls"
	"syscall"

	"golang.org/x/sys/unix"
)

// queueEmpty reports whether the kernel's send queue of conn is empty:
// every byte written was acknowledged by the receiver's TCP (SIOCOUTQ
// counts the bytes not yet acknowledged). When it cannot tell, it says
// no, which keeps messages held longer, never shorter.
func queueEmpty(conn *tls.Conn) bool {
	sc, ok := conn.NetConn().(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	empty := false
	_ = raw.Control(func(fd uintptr) {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		empty = err == nil && n == 0
	})
	return empty
}

// quickAck asks the kernel to acknowledge what conn receives at once
// rather than up to 40 ms later. A RELP server with Nagle's algorithm on
// (rsyslog's) holds its second answer of a window until the first is
// acknowledged, and the client, which sends nothing until the window is
// answered, would otherwise delay that acknowledgement: every window
// would wait 40 ms. The switch does not last (the kernel may leave quick
// acknowledgement again), so it is set before each read.
func quickAck(conn *tls.Conn) {
	sc, ok := conn.NetConn().(syscall.Conn)
	if !ok {
		return
	}
	if raw, err := sc.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
	}
}
