package persistence

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Bucket names of the session recordings. BucketSessions maps a session ID
// to its Recording; BucketSessionQueue maps the zero-padded registration
// number to the session ID, so that recordings are streamed in the order
// their session.upload events came, and a backlog can be read a slice at a
// time instead of held in memory.
const (
	BucketSessions     = "sessions"
	BucketSessionQueue = "session-queue"
)

// Recording is the progress of one session recording, from its registration
// (its session.upload event was seen) until it is streamed completely or
// given up; then it is deleted.
type Recording struct {
	ID string `json:"id"`
	// Seq numbers registrations; it is the recording's place in the queue.
	Seq uint64 `json:"seq"`
	// Index is the index of the first session event not yet confirmed.
	Index int64 `json:"index"`
	// Registered is when the session.upload event was seen (wall clock): a
	// recording that Teleport still does not have long after is given up.
	Registered time.Time `json:"registered"`
	// UploadTime is the session.upload event's time.
	UploadTime time.Time `json:"upload_time"`
	// Failures counts consecutive failed attempts, and NotBefore is when the
	// next one may start.
	Failures  int       `json:"failures,omitempty"`
	NotBefore time.Time `json:"not_before,omitempty"`
	// NotFound counts the attempts Teleport answered "not found".
	NotFound int `json:"not_found,omitempty"`
	// Crashes counts the times its player died on it (failed until its
	// restart budget was spent): a recording that kills its player every
	// time is given up, whatever the restarts in between.
	Crashes int `json:"crashes,omitempty"`
}

// QueueKey is the recording's key in BucketSessionQueue.
func (r Recording) QueueKey() string { return fmt.Sprintf("%020d", r.Seq) }

// RecordingWrites stores r.
func RecordingWrites(r Recording) []kv.Write {
	return []kv.Write{
		putJSON(BucketSessions, sessionKey(r.ID), r),
		{Bucket: BucketSessionQueue, Key: r.QueueKey(), Value: []byte(r.ID)},
	}
}

// RecordingDeletes removes r once it is finished or given up.
func RecordingDeletes(r Recording) []kv.Write {
	return []kv.Write{del(BucketSessions, sessionKey(r.ID)), del(BucketSessionQueue, r.QueueKey())}
}

// sessionKey is the key of session id. The manager registers UUIDs only,
// which are their own keys; anything longer enters as its digest (the
// records keep the ID).
func sessionKey(id string) string {
	part, _ := keyPart(id)
	return part
}

// Recording returns the stored progress of session id.
func (s *Store) Recording(id string) (Recording, bool, error) {
	var r Recording
	ok, err := s.getJSON(BucketSessions, sessionKey(id), &r)
	return r, ok, err
}

// RecordingPage is a slice of the session queue.
type RecordingPage struct {
	Recordings []Recording
	// Last is the last queue key read, where the next page starts.
	Last string
	// More is false once the end of the queue was reached.
	More bool
}

// Recordings reads the next limit queue entries after queue key after (""
// for the first) and returns their recordings in queue order. Entries left
// behind by a recording registered twice (a replay racing a restart) or
// deleted are skipped.
func (s *Store) Recordings(after string, limit int) (RecordingPage, error) {
	type entry struct{ key, id string }
	var entries []entry
	if err := s.Scan(BucketSessionQueue, after, limit, func(k string, v []byte) bool {
		entries = append(entries, entry{k, string(v)})
		return true
	}); err != nil {
		return RecordingPage{}, err
	}
	page := RecordingPage{Last: after, More: len(entries) == limit}
	for _, e := range entries {
		page.Last = e.key
		r, ok, err := s.Recording(e.id)
		if err != nil {
			return RecordingPage{}, err
		}
		if ok && r.QueueKey() == e.key {
			page.Recordings = append(page.Recordings, r)
		}
	}
	return page, nil
}

// LastRecordingSeq returns the highest registration number in the queue (0
// when it is empty), so that numbering goes on after a restart.
func (s *Store) LastRecordingSeq() (uint64, error) {
	var last uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(BucketSessionQueue))
		if b == nil {
			return nil
		}
		if k, _ := b.Cursor().Last(); k != nil {
			if _, err := fmt.Sscanf(string(k), "%d", &last); err != nil {
				return fmt.Errorf("session queue key %q: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, s.decodeErr(err)
	}
	return last, nil
}

// BucketSessionsGivenUp keeps the recordings given up (by session ID), so
// that an operator can retry or drop them (sessions retry|drop); BucketDropped
// records what an operator dropped for good, by "session/<sid>" or
// "export/<day>/<chunk>".
const (
	BucketSessionsGivenUp = "sessions-given-up"
	BucketDropped         = "dropped"
)

// GivenUp is a recording given up, and why.
type GivenUp struct {
	Recording Recording `json:"recording"`
	Reason    string    `json:"reason"` // not_found, failing, crashing
	At        time.Time `json:"at"`
}

// Dropped records what an operator dropped for good.
type Dropped struct {
	At     time.Time `json:"at"`
	What   string    `json:"what"`
	Detail string    `json:"detail,omitempty"`
}

// RecordingGiveUpWrites take r out of the queue and keep it as given up.
func RecordingGiveUpWrites(r Recording, reason string, at time.Time) []kv.Write {
	return append(RecordingDeletes(r), putJSON(BucketSessionsGivenUp, sessionKey(r.ID), GivenUp{Recording: r, Reason: reason, At: at}))
}

// GivenUpRecordings lists the recordings given up, by session ID.
func (s *Store) GivenUpRecordings() ([]GivenUp, error) {
	var out []GivenUp
	var bad error
	err := s.Scan(BucketSessionsGivenUp, "", 0, func(key string, value []byte) bool {
		var g GivenUp
		if err := json.Unmarshal(value, &g); err != nil {
			bad = &CorruptError{Path: s.path, Err: fmt.Errorf("%s/%s: %w", BucketSessionsGivenUp, key, err)}
			return false
		}
		out = append(out, g)
		return true
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// RecordingRetryWrites put a given-up recording back in the queue as a new
// registration (number seq), its failures forgotten and a fresh wait for
// its upload from now.
func RecordingRetryWrites(g GivenUp, seq uint64, now time.Time) []kv.Write {
	r := g.Recording
	r.Seq, r.Failures, r.NotFound, r.Crashes, r.NotBefore = seq, 0, 0, 0, time.Time{}
	r.Registered, r.UploadTime = now, now
	return append(RecordingWrites(r), del(BucketSessionsGivenUp, sessionKey(r.ID)))
}

// RecordingDropWrites forget a given-up recording, recording the drop.
func RecordingDropWrites(g GivenUp, now time.Time) []kv.Write {
	return []kv.Write{del(BucketSessionsGivenUp, sessionKey(g.Recording.ID)),
		putJSON(BucketDropped, "session/"+sessionKey(g.Recording.ID), Dropped{At: now, What: "session recording " + g.Recording.ID,
			Detail: fmt.Sprintf("given up (%s) at index %d", g.Reason, g.Recording.Index)})}
}
