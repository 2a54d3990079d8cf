package persistence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
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
	mu    sync.Mutex
	path  string
	limit int64 // bytes
	n     int   // letters written by this process
}

// DefaultDeadLetterLimit bounds the dead-letter file (--dead-letter-max-mb).
const DefaultDeadLetterLimit = 256 << 20

// NewDeadLetters writes to dir/dead-letters.jsonl (created on first use),
// up to DefaultDeadLetterLimit bytes.
func NewDeadLetters(dir string) *DeadLetters {
	return &DeadLetters{path: filepath.Join(dir, DeadLetterFile), limit: DefaultDeadLetterLimit}
}

// SetLimit bounds the file to n bytes.
func (d *DeadLetters) SetLimit(n int64) {
	d.mu.Lock()
	d.limit = n
	d.mu.Unlock()
}

// DeadLettersFullError is the error of an append that would take the file
// over its limit: the letter is not written, and the event waits (it is
// not settled) until an operator deals with the file.
type DeadLettersFullError struct {
	Path        string
	Size, Limit int64
}

func (e *DeadLettersFullError) Error() string {
	return fmt.Sprintf("the dead-letter file %s is full (%d bytes, of %d allowed by --dead-letter-max-mb): "+
		"deal with its letters (resend or keep them elsewhere), then move or truncate it, or raise --dead-letter-max-mb; "+
		"until then the rejected events wait", e.Path, e.Size, e.Limit)
}

// Size is the size of the file now, 0 when there is none.
func (d *DeadLetters) Size() int64 {
	info, err := os.Stat(d.path)
	if err != nil {
		return 0
	}
	return info.Size()
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
	// The size of the file as it is now: an operator who moved it away
	// has made room.
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat dead-letter file %s: %w", d.path, err)
	}
	if info.Size()+int64(len(line)) > d.limit {
		f.Close()
		return &DeadLettersFullError{Path: d.path, Size: info.Size(), Limit: d.limit}
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

// Remove takes letters out of the file: for each key (URL and event ID, see
// LetterKey) in keys, the first letter with that key. It rewrites the file
// through a temporary one, fsync'd and renamed over it, so a crash leaves
// either file whole. It returns how many letters it removed.
func (d *DeadLetters) Remove(keys []string) (int, error) {
	want := map[string]int{}
	for _, k := range keys {
		want[k]++
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	raw, err := os.ReadFile(d.path)
	if err != nil {
		return 0, fmt.Errorf("read dead-letter file: %w", err)
	}
	var kept bytes.Buffer
	removed := 0
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		var l DeadLetter
		if len(bytes.TrimSpace(line)) > 0 && json.Unmarshal(line, &l) == nil {
			if k := LetterKey(l.URL, l.EventID, l.Event); want[k] > 0 {
				want[k]--
				removed++
				continue
			}
		}
		kept.Write(line)
	}
	if removed == 0 {
		return 0, nil
	}
	if err := replaceFile(d.path, kept.Bytes()); err != nil {
		return 0, fmt.Errorf("rewrite dead-letter file %s: %w", d.path, err)
	}
	d.n = max(d.n-removed, 0)
	return removed, nil
}

// LetterKey is what tells a letter from the others: its URL and event ID,
// or its event when it has no ID.
func LetterKey(url, eventID string, event []byte) string {
	if eventID != "" {
		return url + " " + eventID
	}
	return url + " " + string(event)
}

// replaceFile writes data to path atomically and durably.
func replaceFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// Letters reads every letter of the file (none when it does not exist).
func (d *DeadLetters) Letters() ([]DeadLetter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	raw, err := os.ReadFile(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dead-letter file: %w", err)
	}
	var out []DeadLetter
	for i, line := range bytes.Split(raw, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var l DeadLetter
		if err := json.Unmarshal(line, &l); err != nil {
			return nil, fmt.Errorf("dead-letter file %s, line %d: %w", d.path, i+1, err)
		}
		out = append(out, l)
	}
	return out, nil
}

// Purge empties the file (atomically), returning how many letters it had.
func (d *DeadLetters) Purge() (int, error) {
	letters, err := d.Letters()
	if err != nil || len(letters) == 0 {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := replaceFile(d.path, nil); err != nil {
		return 0, fmt.Errorf("empty dead-letter file %s: %w", d.path, err)
	}
	d.n = 0
	return len(letters), nil
}
