package persistence_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

func TestDirNamesTheClusterLikeUpstream(t *testing.T) {
	require.Equal(t, filepath.Join("/s", "teleport.example.com_3025"), persistence.Dir("/s", "teleport.example.com:3025"))
}

func TestCorruptFileIsReportedNotReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, persistence.FileName)
	garbage := []byte(strings.Repeat("not a bbolt file ", 1000))
	require.NoError(t, os.WriteFile(path, garbage, 0o600))
	_, err := persistence.Open(dir)
	var corrupt *persistence.CorruptError
	require.True(t, errors.As(err, &corrupt), "got %v", err)
	require.Contains(t, err.Error(), path)
	require.Contains(t, err.Error(), "move it away")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, garbage, after, "the file must be left as it was")
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := persistence.Open(dir)
	require.NoError(t, err)
	defer s.Close()
	_, err = persistence.Open(dir)
	require.ErrorIs(t, err, persistence.ErrLocked)
}

// Only bbolt's checks and records that do not decode are corruption: a
// store closed while the daemon stops is not, nor an I/O error at open.
func TestStorageErrorsAreClassified(t *testing.T) {
	dir := t.TempDir()
	s, err := persistence.Open(dir)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, _, err = s.AuditPosition()
	require.ErrorIs(t, err, persistence.ErrClosed)
	var corrupt *persistence.CorruptError
	require.False(t, errors.As(err, &corrupt), "a closed store reported as corrupt: %v", err)
	// Neither is restarted by the supervisor (actors/supervisor.Unrecoverable).
	var unrecoverable interface{ Unrecoverable() bool }
	require.True(t, errors.As(err, &unrecoverable) && unrecoverable.Unrecoverable())
	err = s.Apply([]kv.Write{{Bucket: persistence.BucketAudit, Key: "k", Value: []byte("v")}})
	require.ErrorIs(t, err, persistence.ErrClosed)
	_, err = s.Recordings("", 10)
	require.ErrorIs(t, err, persistence.ErrClosed)
	_, err = s.LastRecordingSeq()
	require.ErrorIs(t, err, persistence.ErrClosed)

	// The state file is a directory: an I/O error, with the path.
	other := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(other, persistence.FileName), 0o700))
	_, err = persistence.Open(other)
	require.Error(t, err)
	require.False(t, errors.As(err, &corrupt), "an I/O error reported as corrupt: %v", err)
	require.ErrorContains(t, err, filepath.Join(other, persistence.FileName))

	// A file that fails bbolt's checks is.
	bad := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bad, persistence.FileName), bytes.Repeat([]byte("x"), 8192), 0o600))
	_, err = persistence.Open(bad)
	require.ErrorAs(t, err, &corrupt)
}
