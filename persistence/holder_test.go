package persistence

import (
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLockHoldersReadProcLocks(t *testing.T) {
	locks := []byte("1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF\n" +
		"1: -> FLOCK  ADVISORY  WRITE 4343 fe:00:1234 0 EOF\n" +
		"2: FLOCK  ADVISORY  READ  4444 fe:00:99 0 EOF\n" +
		"3: FLOCK  ADVISORY  READ  0 fe:00:1234 0 EOF\n" +
		"4: POSIX  ADVISORY  WRITE 4242 fe:00:1234 0 EOF\n")
	got := lockHolders(locks, "fe:00:1234")
	require.Len(t, got, 2, "the holders of that file, once each; not the one waiting")
	require.Equal(t, 4242, got[0].PID)
	require.Equal(t, 0, got[1].PID, "in another PID namespace")
	require.Nil(t, got[1].Args)
}

// The process that holds the state file is named, with its command line.
func TestHoldersNameTheProcessHoldingTheState(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux lists its locks")
	}
	dir := t.TempDir()
	s, err := Open(dir)
	require.NoError(t, err)
	got := Holders(dir)
	require.NoError(t, s.Close())
	require.Len(t, got, 1)
	require.Equal(t, os.Getpid(), got[0].PID)
	require.Equal(t, os.Args, got[0].Args)
	require.Empty(t, Holders(dir), "nobody holds it once closed")
}
