package persistence

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
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
	// Stream is the stream the event came from (audit, session), for the
	// metrics of a letter sent again.
	Stream string `json:"stream,omitempty"`
	// TakenBack marks the letter of an event that a receiver rejecting
	// everything refused (a circuit breaker opened): an event still owed,
	// which the next start sends again and takes out of the file once
	// accepted, not an event rejected for good.
	TakenBack bool `json:"taken_back,omitempty"`
}

// DeadLetters appends rejected events, one JSON line each, fsync'd before
// the event is counted as settled: a dead letter is never lost either.
type DeadLetters struct {
	mu    sync.Mutex
	path  string
	limit int64 // bytes
	n     int   // letters written by this process
	// open opens the file to append to: openAppend, or in tests a file
	// whose writes fail as a full disk's do.
	open func(path string) (letterFile, error)
}

// letterFile is the dead-letter file opened to append to (an *os.File).
type letterFile interface {
	io.Writer
	io.ReaderAt
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

func openAppend(path string) (letterFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// DefaultDeadLetterLimit bounds the dead-letter file (--dead-letter-max-mb).
const DefaultDeadLetterLimit = 256 << 20

// NewDeadLetters writes to dir/dead-letters.jsonl (created on first use),
// up to DefaultDeadLetterLimit bytes.
func NewDeadLetters(dir string) *DeadLetters {
	return &DeadLetters{path: filepath.Join(dir, DeadLetterFile), limit: DefaultDeadLetterLimit, open: openAppend}
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

// DeadLetterTooLargeError is the error of an append of a letter larger than
// the whole file may be: emptying the file does not help, only a larger
// --dead-letter-max-mb (or a receiver that takes the event). The letter is
// not written and the event waits, as with a full file.
type DeadLetterTooLargeError struct {
	Path, URL, EventID, Type string
	Size, Limit              int64
}

func (e *DeadLetterTooLargeError) Error() string {
	event := "an event without ID"
	if e.EventID != "" {
		event = "event " + e.EventID
	}
	if e.Type != "" {
		event += " (" + e.Type + ")"
	}
	return fmt.Sprintf("%s rejected by %s is too large to dead-letter: its letter takes %d bytes, more than the whole "+
		"dead-letter file %s may hold (%d bytes, --dead-letter-max-mb); it is not written and the event waits: "+
		"restart with --dead-letter-max-mb %d or more, or make the receiver accept the event",
		event, e.URL, e.Size, e.Path, e.Limit, (e.Size+1<<20-1)>>20)
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

// Append writes one dead letter durably. A letter larger than the limit is
// a *DeadLetterTooLargeError, one that does not fit beside the letters
// there a *DeadLettersFullError; a failed write leaves the file as it was.
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
	if int64(len(line)) > d.limit {
		return &DeadLetterTooLargeError{Path: d.path, URL: l.URL, EventID: l.EventID, Type: l.Type, Size: int64(len(line)), Limit: d.limit}
	}
	f, err := d.open(d.path)
	if err != nil {
		return fmt.Errorf("open dead-letter file: %w", err)
	}
	err = d.appendTo(f, line)
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close dead-letter file %s: %w", d.path, cerr)
	}
	if err != nil {
		return err
	}
	d.n++
	return nil
}

// appendTo writes line at the end of f, durably. A write or sync that
// fails (a full disk writes part of the line) cuts the file back to its
// size before: a partial line would swallow the next letter, glued to it.
func (d *DeadLetters) appendTo(f letterFile, line []byte) error {
	// The size of the file as it is now: an operator who moved it away
	// has made room.
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat dead-letter file %s: %w", d.path, err)
	}
	size := info.Size()
	torn, err := endsMidLine(f, size)
	if err != nil {
		return fmt.Errorf("read dead-letter file %s: %w", d.path, err)
	}
	if torn {
		// A line cut short by a crash (or by an older version on a full
		// disk): end it, so that this letter stays whole. Reading reports
		// the cut line.
		line = append([]byte{'\n'}, line...)
	}
	if size+int64(len(line)) > d.limit {
		return &DeadLettersFullError{Path: d.path, Size: size, Limit: d.limit}
	}
	if _, err := f.Write(line); err != nil {
		return d.undo(f, size, fmt.Errorf("write dead-letter file %s: %w", d.path, err))
	}
	if err := f.Sync(); err != nil {
		return d.undo(f, size, fmt.Errorf("sync dead-letter file %s: %w", d.path, err))
	}
	return nil
}

// endsMidLine reports whether the file's last line has no newline.
func endsMidLine(f letterFile, size int64) (bool, error) {
	if size == 0 {
		return false, nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil {
		return false, err
	}
	return last[0] != '\n', nil
}

// undo cuts f back to size after an append failed with cause.
func (d *DeadLetters) undo(f letterFile, size int64, cause error) error {
	hint := ""
	if errors.Is(cause, syscall.ENOSPC) || errors.Is(cause, syscall.EDQUOT) {
		hint = "; free space on the file system of --storage"
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("%w (cutting the partial letter off failed too: %v; the next letter starts a line of its own, "+
			"and dead-letters list reports this one)%s", cause, err, hint)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w (syncing the file cut back failed too: %v)%s", cause, err, hint)
	}
	return fmt.Errorf("%w (the file is left as it was)%s", cause, hint)
}

// Remove takes letters out of the file: for each key (URL and event ID, see
// LetterKey) in keys, the first letter with that key. It rewrites the file
// through a temporary one, fsync'd and renamed over it, so a crash leaves
// either file whole; what is not a letter stays. It returns how many
// letters it removed.
func (d *DeadLetters) Remove(keys []string) (int, error) {
	want := tally(keys)
	d.mu.Lock()
	defer d.mu.Unlock()
	removed, err := d.rewrite(func(l DeadLetter) (edit, []byte) {
		if k := LetterKey(l.URL, l.EventID, l.Event); want[k] > 0 {
			want[k]--
			return drop, nil
		}
		return keep, nil
	})
	if err != nil {
		return 0, err
	}
	d.n = max(d.n-removed, 0)
	return removed, nil
}

// edit is what rewrite does with a letter.
type edit int

const (
	keep edit = iota
	drop
	replace // with the line given
)

// rewrite takes the letters that fn drops out of the file, and puts the
// line fn gives in place of those it replaces, keeping everything else
// byte for byte, but the bytes before a letter changed on a line (see
// BadLine): those get a line of their own. It returns how many letters it
// changed; the file is not rewritten when none.
func (d *DeadLetters) rewrite(fn func(DeadLetter) (edit, []byte)) (int, error) {
	raw, err := os.ReadFile(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read dead-letter file: %w", err)
	}
	var kept bytes.Buffer
	changed := 0
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		p := parseLine(line)
		e, repl := keep, []byte(nil)
		if p.ok {
			e, repl = fn(p.letter)
		}
		if e == keep {
			kept.Write(line)
			continue
		}
		changed++
		if p.junk > 0 {
			kept.Write(line[:p.junk])
			kept.WriteByte('\n')
		}
		kept.Write(repl) // nil when dropped
	}
	if changed == 0 {
		return 0, nil
	}
	if err := replaceFile(d.path, kept.Bytes()); err != nil {
		return 0, fmt.Errorf("rewrite dead-letter file %s: %w", d.path, err)
	}
	return changed, nil
}

// tally counts each key.
func tally(keys []string) map[string]int {
	n := map[string]int{}
	for _, k := range keys {
		n[k]++
	}
	return n
}

// MarkTakenBack marks, for each key (see LetterKey), the first letter with
// that key not marked yet as taken back (see DeadLetter.TakenBack), so
// that a restart knows the event is still owed. It returns how many it
// marked.
func (d *DeadLetters) MarkTakenBack(keys []string) (int, error) {
	want := tally(keys)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rewrite(func(l DeadLetter) (edit, []byte) {
		k := LetterKey(l.URL, l.EventID, l.Event)
		if l.TakenBack || want[k] == 0 {
			return keep, nil
		}
		want[k]--
		l.TakenBack = true
		line, err := json.Marshal(l)
		if err != nil { // it was read from JSON: it encodes
			return keep, nil
		}
		return replace, append(line, '\n')
	})
}

// TakenBack returns the letters marked as taken back: events still owed.
// It reads the file a line at a time, at every start: the file may hold
// hundreds of MiB of letters that are not.
func (d *DeadLetters) TakenBack() ([]DeadLetter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.Open(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dead-letter file: %w", err)
	}
	defer f.Close()
	var out []DeadLetter
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if bytes.Contains(line, []byte(`"taken_back":true`)) {
			if p := parseLine(line); p.ok && p.letter.TakenBack {
				out = append(out, p.letter)
			}
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read dead-letter file %s: %w", d.path, err)
		}
	}
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

// BadLine is a line of the dead-letter file that is not a letter, or
// that has bytes before its letter: what a write cut short left there (a
// full disk or a crash, with a version that did not cut the partial line
// off), or an edit by hand. Reading reports it instead of refusing every
// letter; it is kept in the file (replay and purge leave it there).
type BadLine struct {
	Line  int   // its number in the file, from 1
	Bytes int   // the bytes that are not a letter
	Err   error // why they are not
	// Salvaged is true when a whole letter followed the bad bytes on the
	// line (appended after a letter cut short): that letter is read.
	Salvaged bool
}

func (b BadLine) String() string {
	s := fmt.Sprintf("line %d: %d bytes that are not a dead letter (%v)", b.Line, b.Bytes, b.Err)
	if b.Salvaged {
		s = fmt.Sprintf("line %d: %d bytes before its dead letter are not one (%v; the letter after them is read)", b.Line, b.Bytes, b.Err)
	}
	return s
}

// letterStart is how every letter's JSON begins (DeadLetter's first field).
var letterStart = []byte(`{"time":`)

// parsed is what one line holds: a letter (ok), after junk bytes that are
// not one (junk > 0, err says why).
type parsed struct {
	letter DeadLetter
	ok     bool
	junk   int
	err    error
}

// parseLine reads one line. A line that is not a letter may end with a
// whole one, appended after a letter cut short: the longest tail that
// starts like a letter and reads as one is that letter.
func parseLine(line []byte) parsed {
	body := bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(body)) == 0 {
		return parsed{}
	}
	l, err := parseLetter(body)
	if err == nil {
		return parsed{letter: l, ok: true}
	}
	for at := 1; at < len(body); at++ {
		i := bytes.Index(body[at:], letterStart)
		if i < 0 {
			break
		}
		at += i
		// A letter has a URL: this tells one from an event's own object
		// that happens to start the same way.
		if tail, terr := parseLetter(body[at:]); terr == nil && tail.URL != "" {
			return parsed{letter: tail, ok: true, junk: at, err: err}
		}
	}
	return parsed{junk: len(body), err: err}
}

// parseLetter reads one letter: a JSON object with an event.
func parseLetter(b []byte) (DeadLetter, error) {
	var l DeadLetter
	if trimmed := bytes.TrimSpace(b); len(trimmed) == 0 || trimmed[0] != '{' {
		return l, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, err
	}
	if len(l.Event) == 0 || string(l.Event) == "null" {
		return l, errors.New("no event in it")
	}
	return l, nil
}

// Letters reads every letter of the file (none when it does not exist),
// and reports apart the lines that are not letters.
func (d *DeadLetters) Letters() ([]DeadLetter, []BadLine, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	raw, err := os.ReadFile(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read dead-letter file: %w", err)
	}
	var (
		out []DeadLetter
		bad []BadLine
	)
	for i, line := range bytes.SplitAfter(raw, []byte("\n")) {
		p := parseLine(line)
		if p.junk > 0 {
			bad = append(bad, BadLine{Line: i + 1, Bytes: p.junk, Err: p.err, Salvaged: p.ok})
		}
		if p.ok {
			out = append(out, p.letter)
		}
	}
	return out, bad, nil
}

// Purge takes every letter out of the file (atomically), returning how
// many it had. Lines that are not letters stay: they may hold what is left
// of one, for an operator to look at.
func (d *DeadLetters) Purge() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, err := d.rewrite(func(DeadLetter) (edit, []byte) { return drop, nil })
	if err != nil {
		return 0, err
	}
	d.n = 0
	return n, nil
}
