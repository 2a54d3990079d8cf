package repair

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

func TestParkedChunksRetryAndDrop(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	a, b := persistence.ChunkRef{Day: day, Chunk: "a"}, persistence.ChunkRef{Day: day, Chunk: "b"}
	var writes []kv.Write
	for _, ref := range []persistence.ChunkRef{a, b} {
		writes = append(writes, persistence.ExportParkedWrites(ref, persistence.ExportChunk{Cursor: "c-" + ref.Chunk, Acked: 7},
			persistence.ExportParked{Error: "stream broke", Attempts: 10, At: day})...)
	}
	storetest.Seed(t, dir, writes...)

	var out bytes.Buffer
	require.NoError(t, Export(dir, "list", nil, false, &out, day))
	require.Contains(t, out.String(), "2026-11-03/a  parked at 2026-11-03T00:00:00Z after 10 failures: stream broke")
	require.ErrorContains(t, Export(dir, "drop", []string{"2026-11-03/zz"}, false, &out, day), `no parked chunk "2026-11-03/zz"`)
	require.NoError(t, Export(dir, "retry", []string{"2026-11-03/a"}, false, &out, day))
	require.NoError(t, Export(dir, "drop", []string{"2026-11-03/b"}, false, &out, day.Add(time.Hour)))

	store, err := persistence.OpenReadOnly(dir, time.Second)
	require.NoError(t, err)
	defer store.Close()
	chunks, err := store.ExportInProgress()
	require.NoError(t, err)
	require.Len(t, chunks, 1)
	require.Equal(t, a, chunks[0].Ref)
	require.Zero(t, chunks[0].Parked.Attempts, "a fresh budget")
	require.Equal(t, "c-a", chunks[0].Chunk.Cursor, "read from its cursor")
	done, err := store.ExportDoneChunks(day)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"b": true}, done)
	raw, ok, err := store.Get(persistence.BucketDropped, "export/2026-11-03/b")
	require.NoError(t, err)
	require.True(t, ok, "the drop is recorded")
	require.Contains(t, string(raw), "stream broke")

	// A running daemon holds the state: nothing is changed under it.
	locked := storetest.Open(t)
	require.ErrorContains(t, Export(locked.Dir(), "list", nil, false, &out, day), "stop it first")
}
