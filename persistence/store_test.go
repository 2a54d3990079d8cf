package persistence_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
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
	require.NoError(t, s.Apply([]persistence.Write{persistence.StartTimeWrite(start), persistence.AuditPositionWrite(pos)}))
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
	s, err := persistence.Open(t.TempDir())
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Apply([]persistence.Write{{Bucket: persistence.BucketAudit, Key: persistence.KeyPosition, Value: []byte("{")}}))
	_, _, err = s.AuditPosition()
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
