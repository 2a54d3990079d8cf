package persistence

import (
	"fmt"
	"strings"
	"time"
)

// The search path's trailing cursor (see actors/poller) reads each span of
// the audit log once more, --late-event-lag after it, and sends only the
// events the live cursor did not: those that became visible late. Its state:
//
//	BucketAudit/trail          TrailPosition: the span being read
//	BucketAuditSeen/<time>/<id>  an event handed out, kept while the trailing
//	                           cursor may still meet it (a long ID enters the
//	                           key as its digest and is the value)
const (
	BucketAuditSeen = "audit-seen"
	KeyTrail        = "trail"
)

// TrailPosition is where the trailing cursor resumes: in the span [Start,
// End), after Offset events of the page at Cursor. Start == End between
// spans.
type TrailPosition struct {
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Cursor string    `json:"cursor,omitempty"`
	Offset int       `json:"offset,omitempty"`
	// Late counts the late events it delivered since the first run.
	Late uint64 `json:"late"`
}

// Trail returns the trailing cursor's stored position.
func (s *Store) Trail() (TrailPosition, bool, error) {
	var p TrailPosition
	ok, err := s.getJSON(BucketAudit, KeyTrail, &p)
	return p, ok, err
}

// TrailWrite stores the trailing cursor's position.
func TrailWrite(p TrailPosition) Write { return putJSON(BucketAudit, KeyTrail, p) }

// seenTime formats an event time in keys: fixed width, so that keys sort
// by time.
const seenTime = "2006-01-02T15:04:05.000000000Z"

// SeenWrite records that the event id, of time t, was handed out.
func SeenWrite(t time.Time, id string) Write {
	part, digested := keyPart(id)
	w := Write{Bucket: BucketAuditSeen, Key: t.UTC().Format(seenTime) + "/" + part, Value: []byte{}}
	if digested {
		w.Value = []byte(id)
	}
	return w
}

// Seen returns the events recorded as handed out, by ID, with their times.
func (s *Store) Seen() (map[string]time.Time, error) {
	out := map[string]time.Time{}
	var bad error
	err := s.Scan(BucketAuditSeen, "", 0, func(key string, value []byte) bool {
		ts, id, ok := strings.Cut(key, "/")
		if len(value) > 0 {
			id = string(value) // the key holds its digest
		}
		t, err := time.Parse(seenTime, ts)
		if !ok || err != nil {
			bad = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: not <time>/<id>", BucketAuditSeen, key)}
			return false
		}
		out[id] = t
		return true
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// SeenPruneWrites are the writes that forget the events of times before t:
// the trailing cursor will not meet them again.
func (s *Store) SeenPruneWrites(t time.Time) ([]Write, error) {
	stop := t.UTC().Format(seenTime)
	var writes []Write
	err := s.Scan(BucketAuditSeen, "", 0, func(key string, _ []byte) bool {
		if key >= stop {
			return false
		}
		writes = append(writes, del(BucketAuditSeen, key))
		return true
	})
	return writes, err
}
