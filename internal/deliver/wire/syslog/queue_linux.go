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
