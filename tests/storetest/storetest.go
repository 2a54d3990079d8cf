// Package storetest opens the state file in a test's own temporary
// directory, the setup most tests of a reader, a writer or the store share.
package storetest

import (
	"testing"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Open opens a fresh store in a temporary directory of the test, which
// closes it when the test ends; it fails the test if it cannot.
func Open(t testing.TB) *persistence.Store {
	t.Helper()
	s, err := persistence.Open(t.TempDir())
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
