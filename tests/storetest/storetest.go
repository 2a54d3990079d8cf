// Package storetest opens the state file in a test's own temporary
// directory, the setup most tests of a reader, a writer or the store share.
package storetest

import (
	"testing"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Open opens a fresh store in a temporary directory of the test, which
// closes it when the test ends; it fails the test if it cannot.
func Open(t testing.TB) *persistence.Store {
	t.Helper()
	return open(t, t.TempDir())
}

// Reopen closes s and opens its directory again, as a restart of the
// daemon does; the test closes the new store when it ends.
func Reopen(t testing.TB, s *persistence.Store) *persistence.Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("close the store: %v", err)
	}
	return open(t, s.Dir())
}

// Seed leaves the state file in dir as a daemon that stopped would: it is
// created if need be, holds writes, and is closed again.
func Seed(t testing.TB, dir string, writes ...kv.Write) {
	t.Helper()
	s, err := persistence.Open(dir)
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	if err := s.Apply(writes); err != nil {
		t.Fatalf("seed the store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close the store: %v", err)
	}
}

func open(t testing.TB, dir string) *persistence.Store {
	t.Helper()
	s, err := persistence.Open(dir)
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
