// Package await bounds a test's waits: a value from a channel, a call
// that must return, each within a time or the test fails saying what did
// not happen.
package await

import (
	"testing"
	"time"
)

// Recv returns the next value from ch, and fails the test with what when
// none comes within d.
func Recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatal(what)
		var zero T
		return zero
	}
}

// Returns calls f on another goroutine and fails the test with what when
// f has not returned within d.
func Returns(t testing.TB, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	Recv(t, done, d, what)
}
