package persistence

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// BucketExport holds the export path's state, apart from the search path's
// (BucketAudit), by key:
//
//	walker               ExportWalker: the day being walked and the start
//	chunk/<day>/<chunk>  ExportChunk: the cursor after the last event settled
//	done/<day>/<chunk>   ExportDone: the chunk is fully settled
//	parked/<day>/<chunk> ExportParked: reading the chunk kept failing; it is
//	                     read again later, from its cursor
//
// Days are UTC dates, 2006-01-02.
const BucketExport = "export"

const (
	keyExportWalker    = "walker"
	prefixExportChunk  = "chunk/"
	prefixExportDone   = "done/"
	prefixExportParked = "parked/"
)

// ExportWalker is where the export day-walker resumes.
type ExportWalker struct {
	// Day is the UTC day being walked (the two before it are polled again).
	Day time.Time `json:"day"`
	// Since: events before it are not exported (--start-time, or the last
	// event the search path acknowledged when the state was seeded from it).
	Since time.Time `json:"since"`
	// AfterID is the last event the search path acknowledged, at Since; it
	// is not sent again.
	AfterID string `json:"after_id,omitempty"`
	// Acked counts events settled by the export path.
	Acked uint64 `json:"acked"`
	// IdleAt is when the last listing began that found every chunk settled.
	IdleAt time.Time `json:"idle_at,omitempty"`
}

// ExportChunk is where a chunk being read resumes.
type ExportChunk struct {
	Cursor string `json:"cursor"`
	Acked  uint64 `json:"acked"`
}

// ExportDone records a chunk whose every event is settled.
type ExportDone struct {
	Events uint64 `json:"events"`
}

// ExportParked records a chunk set aside after repeated failures.
type ExportParked struct {
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
}

// ChunkRef names one export chunk: a chunk of a UTC day.
type ChunkRef struct {
	Day   time.Time
	Chunk string
}

// String is day/chunk, as chunks are named in logs and keys.
func (c ChunkRef) String() string { return DayName(c.Day) + "/" + c.Chunk }

// DayName is the chunk's day, as days are named in keys and logs.
func (c ChunkRef) DayName() string { return DayName(c.Day) }

// Day is the UTC day of t, at midnight.
func Day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// DayName is the UTC date of d, as days are named in keys and logs.
func DayName(d time.Time) string { return d.UTC().Format(time.DateOnly) }

// ExportWalker returns the stored state of the day-walker.
func (s *Store) ExportWalker() (ExportWalker, bool, error) {
	var w ExportWalker
	ok, err := s.getJSON(BucketExport, keyExportWalker, &w)
	return w, ok, err
}

// ExportWalkerWrite stores the day-walker's state.
func ExportWalkerWrite(w ExportWalker) Write { return putJSON(BucketExport, keyExportWalker, w) }

// ExportChunk returns the stored position of a chunk.
func (s *Store) ExportChunk(c ChunkRef) (ExportChunk, bool, error) {
	var st ExportChunk
	ok, err := s.getJSON(BucketExport, prefixExportChunk+c.String(), &st)
	return st, ok, err
}

// ExportChunkWrite stores the position of a chunk being read.
func ExportChunkWrite(c ChunkRef, st ExportChunk) Write {
	return putJSON(BucketExport, prefixExportChunk+c.String(), st)
}

// ExportParkedWrites store the position of a chunk that is set aside, and
// why.
func ExportParkedWrites(c ChunkRef, st ExportChunk, p ExportParked) []Write {
	return []Write{ExportChunkWrite(c, st), putJSON(BucketExport, prefixExportParked+c.String(), p)}
}

// ExportDoneWrites record a chunk as done, in place of its position.
func ExportDoneWrites(c ChunkRef, events uint64) []Write {
	return []Write{
		del(BucketExport, prefixExportChunk+c.String()),
		del(BucketExport, prefixExportParked+c.String()),
		putJSON(BucketExport, prefixExportDone+c.String(), ExportDone{Events: events}),
	}
}

// ExportPruneWrites are the writes that remove the completion records of
// the days before day: days the walker no longer lists, whose records it
// never reads again. Keys sort by day, so the scan stops at the first key
// of day.
func (s *Store) ExportPruneWrites(day time.Time) ([]Write, error) {
	stop := prefixExportDone + DayName(day)
	var writes []Write
	err := s.Scan(BucketExport, strings.TrimSuffix(prefixExportDone, "/"), 0, func(key string, _ []byte) bool {
		if !strings.HasPrefix(key, prefixExportDone) || key >= stop {
			return false
		}
		writes = append(writes, del(BucketExport, key))
		return true
	})
	return writes, err
}

// ExportDoneChunks lists the completed chunks of a day.
func (s *Store) ExportDoneChunks(day time.Time) (map[string]bool, error) {
	prefix := prefixExportDone + DayName(day) + "/"
	out := map[string]bool{}
	err := s.Scan(BucketExport, prefix[:len(prefix)-1], 0, func(key string, _ []byte) bool {
		if !strings.HasPrefix(key, prefix) {
			return false // past the day's keys
		}
		out[strings.TrimPrefix(key, prefix)] = true
		return true
	})
	return out, err
}

// ExportParkedChunks lists the chunks set aside after repeated failures.
func (s *Store) ExportParkedChunks() ([]ChunkRef, error) {
	var out []ChunkRef
	var bad error
	err := s.Scan(BucketExport, strings.TrimSuffix(prefixExportParked, "/"), 0, func(key string, _ []byte) bool {
		rest, ok := strings.CutPrefix(key, prefixExportParked)
		if !ok {
			return false // past the parked keys
		}
		name, chunk, _ := strings.Cut(rest, "/")
		day, err := time.Parse(time.DateOnly, name)
		if err != nil {
			bad = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: %w", BucketExport, key, err)}
			return false
		}
		out = append(out, ChunkRef{Day: day, Chunk: chunk})
		return true
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// ChunkProgress is a chunk being read, or set aside (Parked non-nil), for
// the status command.
type ChunkProgress struct {
	Ref    ChunkRef
	Chunk  ExportChunk
	Parked *ExportParked
}

// ExportInProgress lists the chunks that have a position and are not done,
// with the parked ones' last error, in key order (by day).
func (s *Store) ExportInProgress() ([]ChunkProgress, error) {
	var out []ChunkProgress
	index := map[string]int{}
	var bad error
	scan := func(prefix string, fn func(ref ChunkRef, value []byte) error) error {
		return s.Scan(BucketExport, strings.TrimSuffix(prefix, "/"), 0, func(key string, value []byte) bool {
			rest, ok := strings.CutPrefix(key, prefix)
			if !ok {
				return false
			}
			name, chunk, _ := strings.Cut(rest, "/")
			day, err := time.Parse(time.DateOnly, name)
			if err == nil {
				err = fn(ChunkRef{Day: day, Chunk: chunk}, value)
			}
			if err != nil {
				bad = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: %w", BucketExport, key, err)}
				return false
			}
			return true
		})
	}
	err := scan(prefixExportChunk, func(ref ChunkRef, value []byte) error {
		var c ExportChunk
		if err := json.Unmarshal(value, &c); err != nil {
			return err
		}
		index[ref.String()] = len(out)
		out = append(out, ChunkProgress{Ref: ref, Chunk: c})
		return nil
	})
	if err == nil && bad == nil {
		err = scan(prefixExportParked, func(ref ChunkRef, value []byte) error {
			var p ExportParked
			if err := json.Unmarshal(value, &p); err != nil {
				return err
			}
			if i, ok := index[ref.String()]; ok {
				out[i].Parked = &p
			} else {
				out = append(out, ChunkProgress{Ref: ref, Parked: &p})
			}
			return nil
		})
	}
	if err == nil {
		err = bad
	}
	return out, err
}

// ExportRetryWrites give a parked chunk a fresh budget of failures: the next
// start reads it first, from its cursor.
func ExportRetryWrites(c ChunkProgress) []Write {
	p := *c.Parked
	p.Attempts = 0
	return []Write{putJSON(BucketExport, prefixExportParked+c.Ref.String(), p)}
}

// ExportDropWrites record a parked chunk as done without its remaining
// events, and the drop.
func ExportDropWrites(c ChunkProgress, now time.Time) []Write {
	return append(ExportDoneWrites(c.Ref, c.Chunk.Acked), putJSON(BucketDropped, "export/"+c.Ref.String(),
		Dropped{At: now, What: "export chunk " + c.Ref.String(), Detail: "parked: " + c.Parked.Error}))
}
