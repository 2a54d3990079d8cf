package persistence

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// The search path's trailing cursor (see actors/poller) reads each span of
// the audit log once more, --late-event-lag after it, and sends only the
// events the live cursor did not: those that became visible late. Its state:
//
//	BucketAudit/trail             TrailPosition: the span being read
//	BucketSeenSets/<second>       the events of that second handed out, kept
//	                              while the trailing cursor may still meet
//	                              them: their 12-byte SeenDigests, end to end
//	BucketAuditSeen/<time>/<id>   the same, one key an event, as versions
//	                              before 16-byte digests wrote it: read, and
//	                              pruned as the trailing cursor moves on
//
// A busy cluster hands out thousands of events within --late-event-lag: at
// 12 bytes each, packed by second, they keep the state file small, where
// keys of a time and an ID took some 200 bytes each.
const (
	BucketSeenSets  = "audit-seen-sets"
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
func TrailWrite(p TrailPosition) kv.Write { return putJSON(BucketAudit, KeyTrail, p) }

// seenTime formats an event time in the keys of versions before 16-byte
// digests: fixed width, so that keys sort by time.
const seenTime = "2006-01-02T15:04:05.000000000Z"

// seenSecond formats the second of a set in BucketSeenSets: fixed width,
// so that keys sort by time.
const seenSecond = "2006-01-02T15:04:05Z"

// SeenDigest names an event handed out: the first 12 bytes of the SHA-256
// of its ID. A collision among the events of one lag would take a late
// event for one handed out: with 100,000 events in a lag its odds are
// 10^-19. (Teleport makes the IDs, UUIDs: no one chooses them to collide.)
type SeenDigest [12]byte

// DigestOf is the SeenDigest of an event ID.
func DigestOf(id string) SeenDigest {
	sum := sha256.Sum256([]byte(id))
	return SeenDigest(sum[:12])
}

// SeenSetWrite stores the set of the events handed out in the second of t,
// the whole set: it replaces the one stored.
func SeenSetWrite(t time.Time, set []SeenDigest) kv.Write {
	v := make([]byte, 0, len(set)*len(SeenDigest{}))
	for _, d := range set {
		v = append(v, d[:]...)
	}
	return kv.Write{Bucket: BucketSeenSets, Key: t.UTC().Truncate(time.Second).Format(seenSecond), Value: v}
}

// Seen returns the events recorded as handed out, with their times: to
// the nanosecond for those of earlier versions, the last nanosecond of
// their second for the others (so that no event is forgotten before its
// time).
func (s *Store) Seen() (map[SeenDigest]time.Time, error) {
	out := map[SeenDigest]time.Time{}
	var bad error
	err := s.Scan(BucketSeenSets, "", 0, func(key string, value []byte) bool {
		t, err := time.Parse(seenSecond, key)
		if err != nil || len(value)%len(SeenDigest{}) != 0 {
			bad = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: not a set of 12-byte digests of a second", BucketSeenSets, key)}
			return false
		}
		for i := 0; i < len(value); i += len(SeenDigest{}) {
			out[SeenDigest(value[i:i+len(SeenDigest{})])] = t.Add(time.Second - 1)
		}
		return true
	})
	if err == nil && bad == nil {
		err = s.Scan(BucketAuditSeen, "", 0, func(key string, value []byte) bool {
			ts, id, ok := strings.Cut(key, "/")
			if len(value) > 0 {
				id = string(value) // the key holds its digest
			}
			t, err := time.Parse(seenTime, ts)
			if !ok || err != nil {
				bad = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: not <time>/<id>", BucketAuditSeen, key)}
				return false
			}
			out[DigestOf(id)] = t
			return true
		})
	}
	if err == nil {
		err = bad
	}
	return out, err
}

// SeenPruneWrites are the writes that forget the events of times before t:
// the trailing cursor will not meet them again.
func (s *Store) SeenPruneWrites(t time.Time) ([]kv.Write, error) {
	var writes []kv.Write
	prune := func(bucket, stop string) error {
		return s.Scan(bucket, "", 0, func(key string, _ []byte) bool {
			if key >= stop {
				return false
			}
			writes = append(writes, del(bucket, key))
			return true
		})
	}
	// A set goes once its whole second is before t.
	err := prune(BucketSeenSets, t.UTC().Truncate(time.Second).Format(seenSecond))
	if err == nil {
		err = prune(BucketAuditSeen, t.UTC().Format(seenTime))
	}
	return writes, err
}
