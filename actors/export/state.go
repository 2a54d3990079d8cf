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
}

type chunkState struct {
	Cursor string `json:"cursor"`
	Acked  uint64 `json:"acked"`
}

type doneState struct {
	Events uint64 `json:"events"`
}

func dayOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func dayName(d time.Time) string { return d.UTC().Format(time.DateOnly) }

func chunkKey(day time.Time, chunk string) string { return "chunk/" + dayName(day) + "/" + chunk }

func donePrefix(day time.Time) string { return "done/" + dayName(day) + "/" }

func doneKey(day time.Time, chunk string) string { return donePrefix(day) + chunk }

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

// initialState is the walker's state for a first start of the export path:
// from the search path's acknowledged position when there is one (so that
// switching modes never sends a day again), else from --start-time.
func initialState(s *persistence.Store, start time.Time) (walkerState, error) {
	var st walkerState
	ok, err := getJSON(s, walkerKey, &st)
	if err != nil || ok {
		return st, err
	}
	st = walkerState{Day: dayOf(start), Since: start}
	pos, ok, err := s.AuditPosition()
	if err != nil {
		return st, err
	}
	if ok && !pos.LastTime.IsZero() && pos.LastTime.After(start) {
		st = walkerState{Day: dayOf(pos.LastTime), Since: pos.LastTime, AfterID: pos.LastID, Acked: pos.Acked}
	}
	return st, nil
}
