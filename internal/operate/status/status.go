// Package status reports where the daemon is and what is stuck, from its
// state file and dead-letter file, for the status command. It only reads.
// A running daemon holds the state file's lock: it answers the same report
// on its control socket (daemon/control.go), built with Collect from its
// own open store.
package status

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Report is the status of one daemon's state directory.
type Report struct {
	// Format is ReportFormat, for scripts reading --json.
	Format      int         `json:"format"`
	Running     bool        `json:"running"`
	Starting    string      `json:"starting,omitempty"` // what a running daemon still starting waits for
	StateFile   string      `json:"state_file"`
	ReadPath    string      `json:"read_path,omitempty"` // search or export; empty before the first start
	StartTime   time.Time   `json:"start_time,omitzero"`
	Audit       *Audit      `json:"audit,omitempty"`
	Export      *Export     `json:"export,omitempty"`
	Recordings  Recordings  `json:"recordings"`
	DeadLetters DeadLetters `json:"dead_letters"`
	Locks       []Lock      `json:"pending_locks"`
	// Outputs are where each stream goes: known only while the daemon
	// runs.
	Outputs []Output `json:"outputs,omitempty"`
}

// Output is a stream's receiver and the protocol it is sent with (http,
// forward, syslog, relp).
type Output struct {
	Stream   string `json:"stream"`
	URL      string `json:"url"`
	Protocol string `json:"protocol"`
}

// Audit is the search path's acknowledged position.
type Audit struct {
	WindowStart time.Time `json:"window_start"`
	LastTime    time.Time `json:"last_event_time,omitzero"`
	LastID      string    `json:"last_event_id,omitempty"`
	Settled     uint64    `json:"events_settled"`
	// LagSeconds is how long ago the last acknowledged event happened.
	LagSeconds float64 `json:"lag_seconds"`
}

// Export is the export path's progress.
type Export struct {
	Day        time.Time `json:"day"`
	Since      time.Time `json:"since"`
	IdleAt     time.Time `json:"caught_up_at,omitzero"`
	Settled    uint64    `json:"events_settled"`
	InProgress []Chunk   `json:"chunks_in_progress"`
	Parked     []Chunk   `json:"chunks_parked"`
}

// Chunk is an export chunk with a position, and why it is parked.
type Chunk struct {
	Day      string    `json:"day"`
	Chunk    string    `json:"chunk"`
	Settled  uint64    `json:"events_settled"`
	Error    string    `json:"error,omitempty"`
	Failures int       `json:"failures,omitempty"`
	At       time.Time `json:"parked_at,omitzero"`
}

// Recordings counts the recordings not finished.
type Recordings struct {
	Queued   int `json:"queued"`
	Failing  int `json:"failing"`   // the last attempt failed
	NotFound int `json:"not_found"` // Teleport did not have them yet
	// GivenUp are kept for sessions retry|drop.
	GivenUp int `json:"given_up"`
	// Active is how many are streaming now: known only while the daemon
	// runs.
	Active *int `json:"active,omitempty"`
}

// DeadLetters sums up the dead-letter file.
type DeadLetters struct {
	File     string         `json:"file"`
	Count    int            `json:"count"`
	Bytes    int64          `json:"bytes"`
	Oldest   time.Time      `json:"oldest,omitzero"`
	ByStatus map[string]int `json:"by_status"`
	// TakenBack counts the letters of events still owed (a receiver that
	// rejected everything): the next start sends them again.
	TakenBack int `json:"taken_back"`
}

// Lock is a lock decided and not yet written to Teleport.
type Lock struct {
	User     string    `json:"user"`
	Failures int       `json:"failures"`
	Trigger  time.Time `json:"trigger"`
	Expires  time.Time `json:"expires,omitzero"`
}

// ReportFormat is the version of Report's JSON. It changes when a field
// changes meaning or goes away; fields are added without a change.
const ReportFormat = 1

// Collect reads the report from an open store and the dead-letter file
// beside it.
func Collect(s *persistence.Store, now time.Time) (Report, error) {
	r := Report{Format: ReportFormat, StateFile: s.Path(), Locks: []Lock{}}
	var err error
	if r.ReadPath, err = s.ReadPath(); err != nil {
		return r, err
	}
	if r.StartTime, _, err = s.StartTime(); err != nil {
		return r, err
	}
	for _, step := range []func(*persistence.Store, *Report, time.Time) error{audit, export, recordings, locks} {
		if err := step(s, &r, now); err != nil {
			return r, err
		}
	}
	r.DeadLetters, err = deadLetters(filepath.Join(s.Dir(), persistence.DeadLetterFile))
	return r, err
}

func audit(s *persistence.Store, r *Report, now time.Time) error {
	pos, ok, err := s.AuditPosition()
	if err != nil || !ok {
		return err
	}
	last := pos.LastTime
	if last.IsZero() {
		last = pos.WindowStart
	}
	r.Audit = &Audit{WindowStart: pos.WindowStart, LastTime: pos.LastTime, LastID: pos.LastID, Settled: pos.Acked,
		LagSeconds: max(0, now.Sub(last).Round(time.Second).Seconds())}
	return nil
}

func export(s *persistence.Store, r *Report, _ time.Time) error {
	w, ok, err := s.ExportWalker()
	if err != nil || !ok {
		return err
	}
	e := &Export{Day: w.Day, Since: w.Since, IdleAt: w.IdleAt, Settled: w.Acked, InProgress: []Chunk{}, Parked: []Chunk{}}
	chunks, err := s.ExportInProgress()
	if err != nil {
		return err
	}
	for _, c := range chunks {
		ch := Chunk{Day: c.Ref.DayName(), Chunk: c.Ref.Chunk, Settled: c.Chunk.Acked}
		if c.Parked != nil {
			ch.Error, ch.Failures, ch.At = c.Parked.Error, c.Parked.Attempts, c.Parked.At
			e.Parked = append(e.Parked, ch)
		} else {
			e.InProgress = append(e.InProgress, ch)
		}
	}
	r.Export = e
	return nil
}

func recordings(s *persistence.Store, r *Report, _ time.Time) error {
	given, err := s.GivenUpRecordings()
	if err != nil {
		return err
	}
	r.Recordings.GivenUp = len(given)
	after := ""
	for {
		page, err := s.Recordings(after, 1000)
		if err != nil {
			return err
		}
		for _, rec := range page.Recordings {
			r.Recordings.Queued++
			if rec.Failures > 0 {
				r.Recordings.Failing++
			}
			if rec.NotFound > 0 {
				r.Recordings.NotFound++
			}
		}
		if !page.More {
			return nil
		}
		after = page.Last
	}
}

func locks(s *persistence.Store, r *Report, _ time.Time) error {
	states, err := s.LockStates()
	if err != nil {
		return err
	}
	for _, st := range states {
		if st.Lock != nil && st.Lock.Pending() {
			r.Locks = append(r.Locks, Lock{User: st.User, Failures: st.Lock.Count, Trigger: st.Lock.Trigger, Expires: st.Lock.Expires})
		}
	}
	return nil
}

// deadLetters reads the file line by line (letters can be large).
func deadLetters(path string) (DeadLetters, error) {
	d := DeadLetters{File: path, ByStatus: map[string]int{}}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("read the dead-letter file: %w", err)
	}
	defer f.Close()
	rd := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			d.add(line)
		}
		if errors.Is(err, io.EOF) {
			return d, nil
		}
		if err != nil {
			return d, fmt.Errorf("read the dead-letter file %s: %w", path, err)
		}
	}
}

func (d *DeadLetters) add(line []byte) {
	var l struct {
		Time      time.Time `json:"time"`
		Status    int       `json:"status"`
		TakenBack bool      `json:"taken_back"`
	}
	d.Bytes += int64(len(line))
	if json.Unmarshal(line, &l) != nil {
		d.ByStatus["unreadable"]++
		d.Count++
		return
	}
	d.Count++
	d.ByStatus[strconv.Itoa(l.Status)]++
	if l.TakenBack {
		d.TakenBack++
	}
	if d.Oldest.IsZero() || l.Time.Before(d.Oldest) {
		d.Oldest = l.Time
	}
}

// statuses are the dead letters' statuses, in order, as "400=2, 413=1".
func (d DeadLetters) statuses() string {
	keys := make([]string, 0, len(d.ByStatus))
	for k := range d.ByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s=%d", k, d.ByStatus[k])
	}
	return out
}
