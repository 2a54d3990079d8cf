package persistence

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DeadLetterFile is the name of the dead-letter file in the per-cluster
// directory.
const DeadLetterFile = "dead-letters.jsonl"

// DeadLetter is one event that Fluentd rejected for good.
type DeadLetter struct {
	Time    time.Time       `json:"time"`
	URL     string          `json:"url"`
	Status  int             `json:"status"`
	Reason  string          `json:"reason"`
	EventID string          `json:"event_id,omitempty"`
	Type    string          `json:"event_type,omitempty"`
	Event   json.RawMessage `json:"event"`
}

// DeadLetters appends rejected events, one JSON line each, fsync'd before
// the event is counted as settled: a dead letter is never lost either.
type DeadLetters struct {
	mu   sync.Mutex
	path string
	n    int // letters written by this process
}

// NewDeadLetters writes to dir/dead-letters.jsonl (created on first use).
func NewDeadLetters(dir string) *DeadLetters {
	return &DeadLetters{path: filepath.Join(dir, DeadLetterFile)}
}

// Path returns the file's path.
func (d *DeadLetters) Path() string { return d.path }

// Count is the number of letters this process wrote, for the exit line.
func (d *DeadLetters) Count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// Append writes one dead letter durably.
func (d *DeadLetters) Append(l DeadLetter) error {
	if !json.Valid(l.Event) {
		// Keep what arrived, even if it is not JSON.
		quoted, _ := json.Marshal(string(l.Event))
		l.Event = quoted
	}
	line, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode dead letter: %w", err)
	}
	line = append(line, '\n')
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.OpenFile(d.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open dead-letter file: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("write dead-letter file %s: %w", d.path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync dead-letter file %s: %w", d.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close dead-letter file %s: %w", d.path, err)
	}
	d.n++
	return nil
}
