package persistence

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
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
// Days are UTC dates, 2006-01-02. A chunk's name comes from Teleport: one
// longer than a key should hold enters the key as its digest, and its
// record keeps it (Name; see keyPart).
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
	Name   string `json:"name,omitempty"` // the chunk's, when its key holds a digest
}

// ExportDone records a chunk whose every event is settled.
type ExportDone struct {
	Events uint64 `json:"events"`
	Name   string `json:"name,omitempty"` // the chunk's, when its key holds a digest
}

// ExportParked records a chunk set aside after repeated failures.
type ExportParked struct {
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
	Name     string    `json:"name,omitempty"` // the chunk's, when its key holds a digest
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
func ExportWalkerWrite(w ExportWalker) kv.Write { return putJSON(BucketExport, keyExportWalker, w) }

// key is c's key after prefix: its day and its name, or the name's digest
// (digested true; the record keeps the name).
func (c ChunkRef) key(prefix string) (key string, digested bool) {
	part, digested := keyPart(c.Chunk)
	return prefix + c.DayName() + "/" + part, digested
}

// keyName is the name to keep in c's record: its own when the key holds a
// digest of it, else none.
func (c ChunkRef) keyName() string {
	if _, digested := keyPart(c.Chunk); digested {
		return c.Chunk
	}
	return ""
}

// ExportChunk returns the stored position of a chunk.
func (s *Store) ExportChunk(c ChunkRef) (ExportChunk, bool, error) {
	var st ExportChunk
	key, _ := c.key(prefixExportChunk)
	ok, err := s.getJSON(BucketExport, key, &st)
	return st, ok, err
}

// ExportChunkWrite stores the position of a chunk being read.
func ExportChunkWrite(c ChunkRef, st ExportChunk) kv.Write {
	key, _ := c.key(prefixExportChunk)
	st.Name = c.keyName()
	return putJSON(BucketExport, key, st)
}

// ExportParkedWrites store the position of a chunk that is set aside, and
// why.
func ExportParkedWrites(c ChunkRef, st ExportChunk, p ExportParked) []kv.Write {
	key, _ := c.key(prefixExportParked)
	p.Name = c.keyName()
	return []kv.Write{ExportChunkWrite(c, st), putJSON(BucketExport, key, p)}
}

// ExportDoneWrites record a chunk as done, in place of its position.
func ExportDoneWrites(c ChunkRef, events uint64) []kv.Write {
	chunk, _ := c.key(prefixExportChunk)
	parked, _ := c.key(prefixExportParked)
	done, _ := c.key(prefixExportDone)
	return []kv.Write{
		del(BucketExport, chunk),
		del(BucketExport, parked),
		putJSON(BucketExport, done, ExportDone{Events: events, Name: c.keyName()}),
	}
}

// chunkName is the name of the chunk whose key ends in part: part itself,
// or, when part is a digest, the name its record keeps.
func chunkName(part string, value []byte) (string, error) {
	if !strings.HasPrefix(part, digestPrefix) {
		return part, nil
	}
	var rec struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(value, &rec); err != nil {
		return "", err
	}
	if rec.Name == "" {
		return "", fmt.Errorf("the key holds a digest and the record no name")
	}
	return rec.Name, nil
}

// ExportPruneWrites are the writes that remove the completion records of
// the days before day: days the walker no longer lists, whose records it
// never reads again. Keys sort by day, so the scan stops at the first key
// of day.
func (s *Store) ExportPruneWrites(day time.Time) ([]kv.Write, error) {
	stop := prefixExportDone + DayName(day)
	var writes []kv.Write
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
	var bad error
	err := s.Scan(BucketExport, prefix[:len(prefix)-1], 0, func(key string, value []byte) bool {
		if !strings.HasPrefix(key, prefix) {
			return false // past the day's keys
		}
		name, err := chunkName(strings.TrimPrefix(key, prefix), value)
		if err != nil {
			bad = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: %w", BucketExport, key, err)}
			return false
		}
		out[name] = true
		return true
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// ExportParkedChunks lists the chunks set aside after repeated failures.
func (s *Store) ExportParkedChunks() ([]ChunkRef, error) {
	var out []ChunkRef
	var bad error
	err := s.Scan(BucketExport, strings.TrimSuffix(prefixExportParked, "/"), 0, func(key string, value []byte) bool {
		rest, ok := strings.CutPrefix(key, prefixExportParked)
		if !ok {
			return false // past the parked keys
		}
		name, part, _ := strings.Cut(rest, "/")
		day, err := time.Parse(time.DateOnly, name)
		var chunk string
		if err == nil {
			chunk, err = chunkName(part, value)
		}
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
			name, part, _ := strings.Cut(rest, "/")
			day, err := time.Parse(time.DateOnly, name)
			var chunk string
			if err == nil {
				chunk, err = chunkName(part, value)
			}
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
func ExportRetryWrites(c ChunkProgress) []kv.Write {
	p := *c.Parked
	p.Attempts = 0
	key, _ := c.Ref.key(prefixExportParked)
	return []kv.Write{putJSON(BucketExport, key, p)}
}

// ExportDropWrites record a parked chunk as done without its remaining
// events, and the drop.
func ExportDropWrites(c ChunkProgress, now time.Time) []kv.Write {
	key, _ := c.Ref.key("export/")
	return append(ExportDoneWrites(c.Ref, c.Chunk.Acked), putJSON(BucketDropped, key,
		Dropped{At: now, What: "export chunk " + c.Ref.String(), Detail: "parked: " + c.Parked.Error}))
}
