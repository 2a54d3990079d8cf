package persistence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestPositionAndStartTimeSurviveReopen(t *testing.T) {
	s := storetest.Open(t)
	_, ok, err := s.AuditPosition()
	require.NoError(t, err)
	require.False(t, ok)

	start := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	pos := persistence.AuditPosition{WindowStart: start, Cursor: "c1", Offset: 7, LastID: "id-7", LastTime: start.Add(time.Minute), Acked: 42}
	require.NoError(t, s.Apply([]kv.Write{persistence.StartTimeWrite(start), persistence.AuditPositionWrite(pos)}))

	s = storetest.Reopen(t, s)
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

func TestUndecodablePositionIsCorruption(t *testing.T) {
	s := storetest.Open(t)
	require.NoError(t, s.Apply([]kv.Write{{Bucket: persistence.BucketAudit, Key: persistence.KeyPosition, Value: []byte("{")}}))
	_, _, err := s.AuditPosition()
	var corrupt *persistence.CorruptError
	require.ErrorAs(t, err, &corrupt)
}

// The events handed out are kept as 16-byte digests packed by second; the
// keys of earlier versions (a time and an ID each) are read as well, and
// both are pruned as the trailing cursor moves on, a set once its whole
// second is behind.
func TestSeenSetsAndTheFormerKeys(t *testing.T) {
	s := storetest.Open(t)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	d := persistence.DigestOf
	require.NoError(t, s.Apply([]kv.Write{
		persistence.SeenSetWrite(t0.Add(200*time.Millisecond), []persistence.SeenDigest{d("a"), d("b")}),
		persistence.SeenSetWrite(t0.Add(time.Second+300*time.Millisecond), []persistence.SeenDigest{d("c")}),
		// As versions before the sets wrote them.
		{Bucket: persistence.BucketAuditSeen, Key: t0.Add(500*time.Millisecond).Format("2006-01-02T15:04:05.000000000Z") + "/old", Value: []byte{}},
	}))
	// A set is replaced whole.
	require.NoError(t, s.Apply([]kv.Write{persistence.SeenSetWrite(t0, []persistence.SeenDigest{d("a"), d("b"), d("e")})}))
	seen, err := s.Seen()
	require.NoError(t, err)
	require.Equal(t, map[persistence.SeenDigest]time.Time{
		d("a"): t0.Add(time.Second - 1), d("b"): t0.Add(time.Second - 1), d("e"): t0.Add(time.Second - 1),
		d("c"): t0.Add(2*time.Second - 1), d("old"): t0.Add(500 * time.Millisecond),
	}, seen)

	// Pruning at 10:00:01.1 forgets the old key and the set of 10:00:00,
	// keeps that of 10:00:01.
	prune, err := s.SeenPruneWrites(t0.Add(1100 * time.Millisecond))
	require.NoError(t, err)
	require.NoError(t, s.Apply(prune))
	seen, err = s.Seen()
	require.NoError(t, err)
	require.Equal(t, map[persistence.SeenDigest]time.Time{d("c"): t0.Add(2*time.Second - 1)}, seen)
}
