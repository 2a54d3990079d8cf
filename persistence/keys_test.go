package persistence_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

// Event IDs and chunk names come from Teleport: one too long for a key is
// stored under its digest, and read back as itself.
func TestContentTooLongForAKeyRoundTrips(t *testing.T) {
	s := storetest.Open(t)
	longID := strings.Repeat("i", 40_000)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	day := persistence.Day(at)
	long := persistence.ChunkRef{Day: day, Chunk: strings.Repeat("c", 40_000)}
	short := persistence.ChunkRef{Day: day, Chunk: "chunk-1"}
	parked := persistence.ChunkRef{Day: day, Chunk: strings.Repeat("p", 300)}
	writes := []kv.Write{persistence.SeenSetWrite(at, []persistence.SeenDigest{persistence.DigestOf(longID), persistence.DigestOf("short-id")}),
		persistence.ExportChunkWrite(short, persistence.ExportChunk{Cursor: "c1", Acked: 1})}
	writes = append(writes, persistence.ExportDoneWrites(long, 7)...)
	writes = append(writes, persistence.ExportParkedWrites(parked, persistence.ExportChunk{Cursor: "c2", Acked: 2},
		persistence.ExportParked{Error: "boom", Attempts: 3, At: at})...)
	for _, w := range writes {
		require.LessOrEqual(t, len(w.Key), 400, "key of %s", w.Bucket)
	}
	require.NoError(t, s.Apply(writes))

	seen, err := s.Seen()
	require.NoError(t, err)
	end := at.Add(time.Second - 1)
	require.Equal(t, map[persistence.SeenDigest]time.Time{persistence.DigestOf(longID): end, persistence.DigestOf("short-id"): end}, seen)
	done, err := s.ExportDoneChunks(day)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{long.Chunk: true}, done)
	refs, err := s.ExportParkedChunks()
	require.NoError(t, err)
	require.Equal(t, []persistence.ChunkRef{parked}, refs)
	progress, err := s.ExportInProgress()
	require.NoError(t, err)
	require.Len(t, progress, 2)
	byName := map[string]persistence.ChunkProgress{}
	for _, p := range progress {
		byName[p.Ref.Chunk] = p
	}
	require.Equal(t, "c1", byName[short.Chunk].Chunk.Cursor)
	require.Equal(t, "c2", byName[parked.Chunk].Chunk.Cursor)
	require.NotNil(t, byName[parked.Chunk].Parked)
	pos, ok, err := s.ExportChunk(parked)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "c2", pos.Cursor)

	// Retried, then dropped, under the same keys.
	require.NoError(t, s.Apply(persistence.ExportRetryWrites(byName[parked.Chunk])))
	require.NoError(t, s.Apply(persistence.ExportDropWrites(byName[parked.Chunk], at)))
	refs, err = s.ExportParkedChunks()
	require.NoError(t, err)
	require.Empty(t, refs)
	done, err = s.ExportDoneChunks(day)
	require.NoError(t, err)
	require.True(t, done[parked.Chunk])
}

func TestCutKeepsRunesWhole(t *testing.T) {
	require.Equal(t, "short", persistence.Cut("short", 10))
	cut := persistence.Cut(strings.Repeat("é", 100), 11)
	require.True(t, utf8.ValidString(cut))
	require.Equal(t, strings.Repeat("é", 5)+"... (200 bytes)", cut)
}
