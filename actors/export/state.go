package export

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Bucket holds the export path's state, apart from the search path's
// (persistence.BucketAudit):
//
//	chunk/<day>/<chunk>  chunkState: the cursor after the last event settled
//	done/<day>/<chunk>   doneState: the chunk is fully settled
//	parked/<day>/<chunk> parkedState: reading the chunk kept failing; it is
//	                     retried later, from its cursor
//	walker               walkerState: the day being walked and the start
const Bucket = "export"

const walkerKey = "walker"

// walkerState is where the day-walker resumes.
type walkerState struct {
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

type chunkState struct {
	Cursor string `json:"cursor"`
	Acked  uint64 `json:"acked"`
}

type doneState struct {
	Events uint64 `json:"events"`
}

type parkedState struct {
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
}

func dayOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func dayName(d time.Time) string { return d.UTC().Format(time.DateOnly) }

func chunkKey(day time.Time, chunk string) string { return "chunk/" + dayName(day) + "/" + chunk }

func donePrefix(day time.Time) string { return "done/" + dayName(day) + "/" }

func doneKey(day time.Time, chunk string) string { return donePrefix(day) + chunk }

const parkedPrefix = "parked/"

func parkedKey(day time.Time, chunk string) string { return parkedPrefix + dayName(day) + "/" + chunk }

func jsonWrite(key string, v any) persistence.Write {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs always encode
	}
	return persistence.Write{Bucket: Bucket, Key: key, Value: raw}
}

func getJSON(s *persistence.Store, key string, v any) (bool, error) {
	raw, ok, err := s.Get(Bucket, key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, &persistence.CorruptError{Path: s.Path(), Err: fmt.Errorf("%s/%s: %w", Bucket, key, err)}
	}
	return true, nil
}

// doneChunks lists the completed chunks of a day.
func doneChunks(s *persistence.Store, day time.Time) (map[string]bool, error) {
	prefix := donePrefix(day)
	out := map[string]bool{}
	err := s.Scan(Bucket, prefix[:len(prefix)-1], 0, func(key string, _ []byte) bool {
		if !strings.HasPrefix(key, prefix) {
			return false // past the day's keys
		}
		out[strings.TrimPrefix(key, prefix)] = true
		return true
	})
	return out, err
}

// parkedChunks lists the chunks set aside after repeated failures.
func parkedChunks(s *persistence.Store) ([]chunkRef, error) {
	var out []chunkRef
	var bad error
	err := s.Scan(Bucket, "parked", 0, func(key string, _ []byte) bool {
		rest, ok := strings.CutPrefix(key, parkedPrefix)
		if !ok {
			return false // past the parked keys
		}
		name, chunk, _ := strings.Cut(rest, "/")
		day, err := time.Parse(time.DateOnly, name)
		if err != nil {
			bad = &persistence.CorruptError{Path: s.Path(), Err: fmt.Errorf("%s/%s: %w", Bucket, key, err)}
			return false
		}
		out = append(out, chunkRef{day: day, chunk: chunk})
		return true
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// initialState is the walker's state for a first start of the export path:
// from the search path's acknowledged position when there is one (so that
// switching modes never sends a day again), else from --start-time.
func initialState(s *persistence.Store, start time.Time) (walkerState, error) {
	var st walkerState
	resumed, err := getJSON(s, walkerKey, &st)
	if err != nil {
		return st, err
	}
	if !resumed {
		st = walkerState{Day: dayOf(start), Since: start}
	}
	pos, ok, err := s.AuditPosition()
	if err != nil || !ok {
		return st, err
	}
	// Everything before the search window is delivered, and within it
	// everything up to the last acknowledged event. When search got further
	// than the export (it ran in between), the export starts from there.
	since, after := pos.WindowStart, ""
	if pos.LastTime.After(since) {
		since, after = pos.LastTime, pos.LastID
	}
	if since.After(st.Since) {
		st.Since, st.AfterID = since, after
		if d := dayOf(since); d.After(st.Day) {
			st.Day = d
		}
		st.Acked = max(st.Acked, pos.Acked)
	}
	return st, nil
}

// SeedMargin is how far before the export's last caught-up moment search
// resumes when the mode changes: Teleport files events into export chunks
// with some delay, so the newest events may not have been in any chunk.
const SeedMargin = 15 * time.Minute

// SearchSeed returns the position the search path should start from after
// the export path ran: every event before the day the export was walking is
// delivered, and every event before the last time it found all chunks
// settled, so search resumes there rather than from its own older position;
// but not after the day of a parked chunk, whose events are not delivered.
// ok is false when the search position needs no change.
func SearchSeed(s *persistence.Store) (persistence.AuditPosition, bool, error) {
	var st walkerState
	found, err := getJSON(s, walkerKey, &st)
	if err != nil || !found {
		return persistence.AuditPosition{}, false, err
	}
	pos, ok, err := s.AuditPosition()
	if err != nil {
		return persistence.AuditPosition{}, false, err
	}
	seed := persistence.AuditPosition{WindowStart: st.Day, Acked: max(st.Acked, pos.Acked)}
	if at := st.IdleAt.Add(-SeedMargin); at.After(seed.WindowStart) {
		// The export had caught up then: search starts a margin before,
		// for events Teleport had not yet put in a chunk.
		seed.WindowStart = at
	}
	parked, err := parkedChunks(s)
	if err != nil {
		return persistence.AuditPosition{}, false, err
	}
	for _, ref := range parked {
		// The export moved on without a parked chunk: search reads its day
		// again (sending the rest of that day twice rather than losing the
		// chunk's events).
		if ref.day.Before(seed.WindowStart) {
			seed.WindowStart = ref.day
		}
	}
	if seed.WindowStart.Before(st.Since) {
		// The export never got past its start: keep to it.
		seed.WindowStart = st.Since
	}
	if ok && !seed.WindowStart.After(pos.WindowStart) {
		return persistence.AuditPosition{}, false, nil
	}
	return seed, true, nil
}
