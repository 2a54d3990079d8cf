package testpki

import "testing"

// New generates a bundle in a fresh temporary directory of the test, and
// fails the test if it cannot.
func New(t testing.TB) *Bundle {
	t.Helper()
	b, err := Generate(t.TempDir())
	if err != nil {
		t.Fatalf("test credentials: %v", err)
	}
	return b
}
