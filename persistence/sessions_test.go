package persistence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestRecordingsQueueInOrderAndSkipStaleEntries(t *testing.T) {
	s := storetest.Open(t)
	now := time.Now().UTC().Truncate(time.Second)
	var all []persistence.Recording
	for i, id := range []string{"c", "a", "b", "d"} {
		r := persistence.Recording{ID: id, Seq: uint64(10 + i), Registered: now}
		all = append(all, r)
		require.NoError(t, s.Apply(persistence.RecordingWrites(r)))
	}
	// "a" registered again later (a replay racing a restart): its first
	// queue entry is stale. "d" is finished and deleted.
	a := all[1]
	a.Seq = 20
	require.NoError(t, s.Apply(persistence.RecordingWrites(a)))
	require.NoError(t, s.Apply(persistence.RecordingDeletes(all[3])))

	page, err := s.Recordings("", 2)
	require.NoError(t, err)
	require.True(t, page.More)
	require.Equal(t, []string{"c"}, ids(page.Recordings), "the stale entry of a is skipped")
	page, err = s.Recordings(page.Last, 10)
	require.NoError(t, err)
	require.False(t, page.More)
	require.Equal(t, []string{"b", "a"}, ids(page.Recordings))

	last, err := s.LastRecordingSeq()
	require.NoError(t, err)
	require.EqualValues(t, 20, last)

	r, ok, err := s.Recording("a")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, now, r.Registered)
}

func ids(rs []persistence.Recording) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}
