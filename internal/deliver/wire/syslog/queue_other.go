//go:build !linux

package syslog

import "crypto/tls"

// queueEmpty cannot look at the send queue here: a written message counts
// as drained at once, and Hold alone keeps it (the daemon is built and
// supported for Linux).
func queueEmpty(*tls.Conn) bool { return true }

// quickAck is Linux's TCP_QUICKACK; elsewhere it does nothing.
func quickAck(*tls.Conn) {}
