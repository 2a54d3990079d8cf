package status

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Text writes the report for people, one aligned line per subject.
func (r Report) Text(w io.Writer, now time.Time) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-13s %s\n", label, fmt.Sprintf(format, args...))
	}
	running := "stopped"
	switch {
	case r.Running && r.Starting != "":
		running = "starting: " + r.Starting
	case r.Running:
		running = "running"
	}
	line("daemon", "%s (state %s)", running, r.StateFile)
	line("read path", "%s", orNone(r.ReadPath, "not chosen yet"))
	for i, o := range r.Outputs {
		label := ""
		if i == 0 {
			label = "outputs"
		}
		line(label, "%s over %s to %s", o.Stream, o.Protocol, o.URL)
	}
	line("start time", "%s", timeOr(r.StartTime, "not set yet"))
	if a := r.Audit; a != nil {
		if a.LastTime.IsZero() {
			line("audit log", "nothing delivered in the window from %s", a.WindowStart.UTC().Format(time.RFC3339))
		} else {
			line("audit log", "delivered up to %s (%s ago, event %s), %d events settled",
				a.LastTime.UTC().Format(time.RFC3339Nano), time.Duration(a.LagSeconds)*time.Second, a.LastID, a.Settled)
		}
	}
	if e := r.Export; e != nil {
		line("export", "walking %s (events since %s), %d events settled, %d chunks in progress, %d parked",
			e.Day.UTC().Format(time.DateOnly), e.Since.UTC().Format(time.RFC3339), e.Settled, len(e.InProgress), len(e.Parked))
		for _, c := range e.Parked {
			line("", "parked %s/%s after %d failures at %s: %s", c.Day, c.Chunk, c.Failures, c.At.UTC().Format(time.RFC3339), c.Error)
		}
	}
	rec := fmt.Sprintf("%d queued (%d failing, %d not found yet), %d given up", r.Recordings.Queued, r.Recordings.Failing,
		r.Recordings.NotFound, r.Recordings.GivenUp)
	if r.Recordings.Active != nil {
		rec += fmt.Sprintf(", %d streaming now", *r.Recordings.Active)
	}
	line("recordings", "%s", rec)
	d := r.DeadLetters
	if d.Count == 0 {
		line("dead letters", "none (%s)", d.File)
	} else {
		line("dead letters", "%d in %s (%d bytes), oldest %s, by status: %s", d.Count, d.File, d.Bytes,
			d.Oldest.UTC().Format(time.RFC3339), d.statuses())
		if d.TakenBack > 0 {
			line("", "%d of them taken back: events still owed, sent again by the next start", d.TakenBack)
		}
	}
	if len(r.Locks) == 0 {
		line("locks", "none pending")
	}
	for i, l := range r.Locks {
		label := ""
		if i == 0 {
			label = "locks"
		}
		line(label, "pending: %s (%d failures, the last at %s)", l.User, l.Failures, l.Trigger.UTC().Format(time.RFC3339))
	}
}

func orNone(s, none string) string {
	if strings.TrimSpace(s) == "" {
		return none
	}
	return s
}

func timeOr(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
