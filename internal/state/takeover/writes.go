package takeover

import (
	"maps"
	"slices"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// UsesExport reports whether the original read the audit log with the
// export API: its cursor_v2 state is then the truth, and the search
// cursor, if any, an older one it was seeded from.
func (o *Original) UsesExport() bool { return len(o.Export) > 0 }

// Writes are this daemon's state for what the original left: the start
// time, the search position (resume, when the original searched) or the
// export state, and the recordings it had not finished. They are applied
// in one transaction, so a crash during the takeover leaves nothing and
// the next start takes over again.
func (o *Original) Writes(start time.Time, resume *Resume, now time.Time) []kv.Write {
	writes := []kv.Write{persistence.StartTimeWrite(start)}
	if resume != nil {
		writes = append(writes, persistence.AuditPositionWrite(resume.Position))
	}
	writes = append(writes, o.exportWrites(start)...)
	for i, r := range o.Recordings {
		rec := persistence.Recording{ID: r.ID, Seq: uint64(i + 1), Index: r.Index, Registered: now,
			UploadTime: r.UploadTime, NotFound: r.Attempts}
		if rec.UploadTime.IsZero() {
			// Not kept by the original for a recording in progress: give
			// it the whole wait for an upload, from now.
			rec.UploadTime = now
		}
		writes = append(writes, persistence.RecordingWrites(rec)...)
	}
	return writes
}

// exportWrites are the export walker's state: it walks from the original's
// earliest day (days before it were done and dropped by the original),
// skips the completed chunks and resumes the others at their cursors.
func (o *Original) exportWrites(start time.Time) []kv.Write {
	if !o.UsesExport() {
		return nil
	}
	days := slices.SortedFunc(maps.Keys(o.Export), time.Time.Compare)
	first := days[0]
	since := start
	if first.After(since) {
		since = first
	}
	writes := []kv.Write{persistence.ExportWalkerWrite(persistence.ExportWalker{Day: first, Since: since})}
	for _, day := range days {
		d := o.Export[day]
		for _, chunk := range d.Completed {
			writes = append(writes, persistence.ExportDoneWrites(persistence.ChunkRef{Day: day, Chunk: chunk}, 0)...)
		}
		for _, chunk := range slices.Sorted(maps.Keys(d.Cursors)) {
			ref := persistence.ChunkRef{Day: day, Chunk: chunk}
			writes = append(writes, persistence.ExportChunkWrite(ref, persistence.ExportChunk{Cursor: d.Cursors[chunk]}))
		}
	}
	return writes
}
