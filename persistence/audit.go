package persistence

import (
	"fmt"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// AuditPosition is where the audit stream resumes: the first event not yet
// acknowledged by Fluentd is event number Offset (0-based) of the page that
// SearchUnstructuredEvents returns for (WindowStart, Cursor).
//
// Pages are addressed by the cursor that fetched them rather than by the
// cursor that follows them, so a restart re-reads the page and skips what was
// acknowledged; this also works for the last page of the live window, which
// has no next cursor.
type AuditPosition struct {
	WindowStart time.Time `json:"window_start"`
	Cursor      string    `json:"cursor,omitempty"`
	Offset      int       `json:"offset"`
	// LastID and LastTime name the last acknowledged event, to check the
	// page on resume and to report progress.
	LastID   string    `json:"last_id,omitempty"`
	LastTime time.Time `json:"last_time,omitempty"`
	// Acked counts the events settled since the first run (sent, dead-lettered
	// or skipped).
	Acked uint64 `json:"acked"`
}

// StartTimeWrite stores the start time of the first run.
func StartTimeWrite(t time.Time) kv.Write {
	return kv.Write{Bucket: BucketMeta, Key: KeyStartTime, Value: []byte(t.UTC().Format(time.RFC3339Nano))}
}

// StartTime returns the start time stored by the first run.
func (s *Store) StartTime() (time.Time, bool, error) {
	raw, ok, err := s.Get(BucketMeta, KeyStartTime)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	t, err := time.Parse(time.RFC3339Nano, string(raw))
	if err != nil {
		return time.Time{}, false, &CorruptError{Path: s.path, Err: fmt.Errorf("start time: %w", err)}
	}
	return t, true, nil
}

// ReadPathWrite records the read path a start chose: "search" or "export".
func ReadPathWrite(path string) kv.Write {
	return kv.Write{Bucket: BucketMeta, Key: keyReadPath, Value: []byte(path)}
}

// ReadPath is the read path of the last start ("" before the first).
func (s *Store) ReadPath() (string, error) {
	raw, _, err := s.Get(BucketMeta, keyReadPath)
	return string(raw), err
}

const keyReadPath = "read_path"

// AuditPositionWrite encodes a position for Apply.
func AuditPositionWrite(p AuditPosition) kv.Write {
	return putJSON(BucketAudit, KeyPosition, p)
}

// AuditPosition returns the stored position of the audit stream.
func (s *Store) AuditPosition() (AuditPosition, bool, error) {
	var p AuditPosition
	ok, err := s.getJSON(BucketAudit, KeyPosition, &p)
	return p, ok, err
}
