// Package takeover reads the state the original Event Handler plugin left
// in the storage directory, so that this daemon, started as a drop-in on
// the same --storage, continues where the original stopped instead of
// starting at now. It only reads: the original's files stay as they were,
// and going back to the original works.
//
// The original keeps one flat file per key (the diskv library, written in
// place without fsync, so a crash can leave a file empty):
//
//	start_time                 RFC 3339, the first run's --start-time
//	window_time                RFC 3339, the start of its search window (later versions)
//	cursor                     the search cursor of the page that holds the last sent event
//	id                         the ID of the last sent event
//	session<sid>               8 bytes, big-endian: next index of a recording being streamed
//	missing_recording<sid>     JSON {Index, Attempt, Timestamp}: a recording not found yet
//	cursor_v2/<day>/           the export API's state: completed-chunks (a list)
//	                           and <chunk>.chunk (the chunk's resume cursor)
package takeover

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The original's file names.
const (
	fileStartTime   = "start_time"
	fileWindowTime  = "window_time"
	fileCursor      = "cursor"
	fileID          = "id"
	prefixSession   = "session"
	prefixMissing   = "missing_recording"
	dirExport       = "cursor_v2"
	fileCompleted   = "completed-chunks"
	suffixChunkFile = ".chunk"
)

// Original is what the original plugin's files say.
type Original struct {
	Dir string
	// StartTime is zero when start_time is missing or empty.
	StartTime time.Time
	// WindowTime is zero without window_time (the v15 layout) or when empty.
	WindowTime time.Time
	// Cursor and ID name the last event sent on the search path.
	Cursor, ID string
	// Recordings are the recordings being streamed and not found yet.
	Recordings []Recording
	// Export is the export API's state by UTC day; nil when the original
	// never used that API.
	Export map[time.Time]Day
}

// Recording is a recording the original had not finished.
type Recording struct {
	ID    string
	Index int64
	// Missing: Teleport did not have it yet, Attempts times, and
	// UploadTime is its session.upload event's time.
	Missing    bool
	Attempts   int
	UploadTime time.Time
}

// Day is the export state of one UTC day.
type Day struct {
	Completed []string
	Cursors   map[string]string // by chunk, of the chunks not completed
}

// Error is a file of the original's state that cannot be taken over.
type Error struct {
	Path    string
	Problem string
	Fix     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("cannot take over the original Event Handler plugin's state: %s %s; %s",
		e.Path, e.Problem, e.Fix)
}

// fixFile is the choice for a file that cannot be read.
const fixFile = "repair or remove the file (the original reads it the same way), " +
	"or give this daemon a --storage of its own and the --start-time it should send from"

// Read reads the original's state in dir; nil when dir holds none. Only the
// files the original writes are read (this daemon's own, beside them, can
// be large, and its control socket cannot be read at all).
func Read(dir string) (*Original, error) {
	return readFS(os.DirFS(dir), dir)
}

// readFS reads the original's state in fsys, which is dir.
func readFS(fsys fs.FS, dir string) (*Original, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the storage directory %s: %w", dir, err)
	}
	o, found := &Original{Dir: dir}, false
	for _, entry := range entries {
		ok, err := o.read(fsys, entry)
		if err != nil {
			return nil, err
		}
		found = found || ok
	}
	if !found {
		return nil, nil
	}
	slices.SortFunc(o.Recordings, func(a, b Recording) int { return strings.Compare(a.ID, b.ID) })
	return o, nil
}

// isOriginals says whether name is one of the files the original writes at
// the top of its directory.
func isOriginals(name string) bool {
	switch name {
	case fileStartTime, fileWindowTime, fileCursor, fileID:
		return true
	}
	return strings.HasPrefix(name, prefixMissing) || (strings.HasPrefix(name, prefixSession) && name != prefixSession)
}

// read takes in one entry of the directory; false when it is not the
// original's.
func (o *Original) read(fsys fs.FS, entry fs.DirEntry) (bool, error) {
	name := entry.Name()
	if entry.IsDir() {
		if name != dirExport {
			return false, nil // dry_run/, or not the original's
		}
		days, err := readExport(fsys, o.Dir)
		o.Export = days
		return len(days) > 0, err
	}
	if !isOriginals(name) {
		return false, nil // this daemon's files, or someone else's: not opened
	}
	file := filepath.Join(o.Dir, name)
	raw, err := readRegular(fsys, name, entry, file)
	if err != nil {
		return false, err
	}
	switch {
	case name == fileStartTime:
		o.StartTime, err = parseTime(file, raw)
	case name == fileWindowTime:
		o.WindowTime, err = parseTime(file, raw)
	case name == fileCursor:
		o.Cursor = string(raw)
	case name == fileID:
		o.ID = string(raw)
	case strings.HasPrefix(name, prefixMissing):
		err = o.readMissing(file, strings.TrimPrefix(name, prefixMissing), raw)
	default:
		err = o.readSession(file, strings.TrimPrefix(name, prefixSession), raw)
	}
	return true, err
}

// readRegular reads a file of the original's, which is a regular file (or
// a link to one): anything else (a FIFO would block the start for ever) is
// an Error.
func readRegular(fsys fs.FS, name string, entry fs.DirEntry, file string) ([]byte, error) {
	mode := entry.Type()
	if mode&fs.ModeSymlink != 0 {
		info, err := fs.Stat(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read the original plugin's %s: %w", file, err)
		}
		mode = info.Mode().Type()
	}
	if !mode.IsRegular() {
		return nil, &Error{Path: file, Problem: fmt.Sprintf("has the original's name but is not a regular file (%s)", mode),
			Fix: "move it away (the original writes regular files only), " +
				"or give this daemon a --storage of its own and the --start-time it should send from"}
	}
	raw, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("read the original plugin's %s: %w", file, err)
	}
	return raw, nil
}

func parseTime(path string, raw []byte) (time.Time, error) {
	if len(raw) == 0 {
		return time.Time{}, nil // empty after a crash, or never set
	}
	t, err := time.Parse(time.RFC3339, string(raw))
	if err != nil {
		return t, &Error{Path: path, Problem: fmt.Sprintf("holds %q, not an RFC 3339 time", raw), Fix: fixFile}
	}
	return t.UTC().Truncate(time.Second), nil
}

func checkSessionID(path, sid string) error {
	if _, err := uuid.Parse(sid); err != nil || len(sid) != 36 {
		return &Error{Path: path, Problem: fmt.Sprintf("does not name a session: %q is not a session ID", sid), Fix: fixFile}
	}
	return nil
}

func (o *Original) readSession(path, sid string, raw []byte) error {
	if err := checkSessionID(path, sid); err != nil {
		return err
	}
	var index int64
	switch len(raw) {
	case 0: // empty after a crash: the original starts the recording over too
	case 8:
		index = int64(binary.BigEndian.Uint64(raw))
	default:
		return &Error{Path: path, Problem: fmt.Sprintf("holds %d bytes, where a recording's index is 8", len(raw)), Fix: fixFile}
	}
	o.Recordings = append(o.Recordings, Recording{ID: sid, Index: index})
	return nil
}

func (o *Original) readMissing(path, sid string, raw []byte) error {
	if err := checkSessionID(path, sid); err != nil {
		return err
	}
	var m struct {
		Index     int64
		Attempt   int
		Timestamp time.Time
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return &Error{Path: path, Problem: fmt.Sprintf("is not the JSON of a missing recording (%v)", err), Fix: fixFile}
	}
	o.Recordings = append(o.Recordings, Recording{ID: sid, Index: m.Index, Missing: true, Attempts: m.Attempt, UploadTime: m.Timestamp})
	return nil
}

// readExport reads cursor_v2/: a directory per UTC day (others are ignored,
// as the original ignores them).
func readExport(fsys fs.FS, dir string) (map[time.Time]Day, error) {
	entries, err := fs.ReadDir(fsys, dirExport)
	if err != nil {
		return nil, fmt.Errorf("read the original plugin's %s: %w", filepath.Join(dir, dirExport), err)
	}
	days := map[time.Time]Day{}
	for _, entry := range entries {
		date, err := time.Parse(time.DateOnly, entry.Name())
		if !entry.IsDir() || err != nil {
			continue
		}
		d, err := readDay(fsys, dir, path.Join(dirExport, entry.Name()))
		if err != nil {
			return nil, err
		}
		days[date] = d
	}
	return days, nil
}

// readDay reads cursor_v2/<day>/ (sub, in fsys, which is dir).
func readDay(fsys fs.FS, dir, sub string) (Day, error) {
	d := Day{Cursors: map[string]string{}}
	entries, err := fs.ReadDir(fsys, sub)
	if err != nil {
		return d, fmt.Errorf("read the original plugin's %s: %w", filepath.Join(dir, filepath.FromSlash(sub)), err)
	}
	for _, entry := range entries {
		name := entry.Name()
		chunk, isChunk := strings.CutSuffix(name, suffixChunkFile)
		if entry.IsDir() || (name != fileCompleted && !isChunk) {
			continue
		}
		rel := path.Join(sub, name)
		raw, err := readRegular(fsys, rel, entry, filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return d, err
		}
		if name == fileCompleted {
			d.Completed = strings.Fields(string(raw))
		} else if c := strings.TrimSpace(string(raw)); c != "" {
			d.Cursors[chunk] = c // an empty cursor: the chunk is read from its start
		}
	}
	for _, c := range d.Completed {
		delete(d.Cursors, c) // a crash between the two writes leaves both
	}
	return d, nil
}
