package persistence_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestDirNamesTheClusterLikeUpstream(t *testing.T) {
	require.Equal(t, filepath.Join("/s", "teleport.example.com_3025"), persistence.Dir("/s", "teleport.example.com:3025"))
}

func TestPositionAndStartTimeSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := persistence.Open(dir)
	require.NoError(t, err)
	_, ok, err := s.AuditPosition()
	require.NoError(t, err)
	require.False(t, ok)

	start := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	pos := persistence.AuditPosition{WindowStart: start, Cursor: "c1", Offset: 7, LastID: "id-7", LastTime: start.Add(time.Minute), Acked: 42}
	require.NoError(t, s.Apply([]kv.Write{persistence.StartTimeWrite(start), persistence.AuditPositionWrite(pos)}))
	require.NoError(t, s.Close())

	s, err = persistence.Open(dir)
	require.NoError(t, err)
	defer s.Close()
	got, ok, err := s.AuditPosition()
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, pos.WindowStart.Equal(got.WindowStart))
	got.WindowStart, got.LastTime, pos.WindowStart, pos.LastTime = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	require.Equal(t, pos, got)
	st, ok, err := s.StartTime()
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, start.Equal(st))
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

func TestUndecodablePositionIsCorruption(t *testing.T) {
	s := storetest.Open(t)
	require.NoError(t, s.Apply([]kv.Write{{Bucket: persistence.BucketAudit, Key: persistence.KeyPosition, Value: []byte("{")}}))
	_, _, err := s.AuditPosition()
	var corrupt *persistence.CorruptError
	require.ErrorAs(t, err, &corrupt)
}

func TestDeadLettersAppendJSONLines(t *testing.T) {
	dir := t.TempDir()
	d := persistence.NewDeadLetters(dir)
	require.NoError(t, d.Append(persistence.DeadLetter{Status: 400, Reason: "bad", EventID: "a", Event: []byte(`{"uid":"a"}`)}))
	require.NoError(t, d.Append(persistence.DeadLetter{Status: 413, Reason: "too big", EventID: "b", Event: []byte(`not json`)}))
	raw, err := os.ReadFile(d.Path())
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"event":{"uid":"a"}`)
	require.Contains(t, lines[1], `"event":"not json"`)
}

// The dead-letter file is bounded and never silently loses a letter: at
// the limit an append fails, saying so, and works again once the operator
// has moved the file away.
func TestDeadLettersStopAtTheLimit(t *testing.T) {
	d := persistence.NewDeadLetters(t.TempDir())
	d.SetLimit(400)
	letter := persistence.DeadLetter{Status: 400, Reason: "bad", EventID: "a", Event: []byte(`{"uid":"a","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)}
	require.NoError(t, d.Append(letter))
	require.NoError(t, d.Append(letter))
	err := d.Append(letter)
	var full *persistence.DeadLettersFullError
	require.ErrorAs(t, err, &full)
	require.ErrorContains(t, err, d.Path())
	require.ErrorContains(t, err, "--dead-letter-max-mb")
	size := d.Size()
	require.Positive(t, size)
	require.LessOrEqual(t, size, int64(400))
	require.Equal(t, 2, d.Count())

	require.NoError(t, os.Rename(d.Path(), d.Path()+".handled"))
	require.Zero(t, d.Size())
	require.NoError(t, d.Append(letter), "the operator dealt with the letters")
}

// Letters taken back are removed from the file, one per key, and the rest
// stay as they were.
func TestDeadLettersRemove(t *testing.T) {
	d := persistence.NewDeadLetters(t.TempDir())
	for _, id := range []string{"a", "b", "a", "c"} {
		require.NoError(t, d.Append(persistence.DeadLetter{URL: "https://f/t", Status: 400, EventID: id, Event: []byte(`{}`)}))
	}
	n, err := d.Remove([]string{persistence.LetterKey("https://f/t", "a", nil), persistence.LetterKey("https://f/t", "c", nil), persistence.LetterKey("https://f/other", "b", nil)})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	raw, err := os.ReadFile(d.Path())
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"event_id":"b"`)
	require.Contains(t, lines[1], `"event_id":"a"`)
	require.Equal(t, 2, d.Count())
	info, err := os.Stat(d.Path())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
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
