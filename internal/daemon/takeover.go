package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/internal/state/takeover"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// takeOver resolves the start time, and on a first start over the original
// plugin's state continues from it.
type takeOver struct {
	dir     string // the original's per-cluster directory
	store   *persistence.Store
	api     takeover.Searcher
	query   takeover.Query
	retries backoff.Policy
	log     zerolog.Logger
}

// startTime is the stored start time (a different --start-time is
// refused). On a first start it is the original's, with its progress taken
// over, when its state is there; else given, or now.
func (t takeOver) startTime(ctx context.Context, given time.Time) (time.Time, error) {
	stored, ok, err := t.store.StartTime()
	switch {
	case err != nil:
		return time.Time{}, err
	case ok && !given.IsZero() && !given.Equal(stored):
		return time.Time{}, &StartTimeError{Given: given, Stored: stored, Path: t.store.Dir()}
	case ok:
		return stored, nil
	}
	orig, err := takeover.Read(t.dir)
	if err != nil {
		return time.Time{}, err
	}
	if orig == nil {
		t.firstStart(given)
		return storeStartTime(t.store, given)
	}
	start, err := originalStart(orig, given)
	if err != nil {
		return time.Time{}, err
	}
	var resume *takeover.Resume
	if !orig.UsesExport() {
		r, err := t.resume(ctx, orig)
		if err != nil {
			return time.Time{}, err
		}
		resume = &r
	}
	if err := t.store.Apply(orig.Writes(start, resume, time.Now().UTC())); err != nil {
		return time.Time{}, err
	}
	t.report(orig, start, resume)
	return start, nil
}

// resume finds where the audit log resumes after the original, waiting
// with backoff while Teleport is unreachable or busy (nothing is written
// before it is found). A stop while waiting is errStopped.
func (t takeOver) resume(ctx context.Context, orig *takeover.Original) (takeover.Resume, error) {
	for attempt := 1; ; attempt++ {
		q := t.query
		q.Now = time.Now()
		r, err := orig.Resume(ctx, t.api, q)
		if err == nil || !teleport.Transient(err) {
			return r, err
		}
		delay := t.retries.Delay(attempt)
		t.log.Error().Err(err).Int("failures", attempt).Dur("retry_in", delay).
			Msg("finding where the original plugin stopped failed; retrying")
		select {
		case <-ctx.Done():
			return r, errStopped
		case <-time.After(delay):
		}
	}
}

// originalStart is the original's start time; --start-time may repeat it
// (a drop-in keeps the original's flags), or stand for it when the
// original's file is empty.
func originalStart(orig *takeover.Original, given time.Time) (time.Time, error) {
	path := filepath.Join(orig.Dir, "start_time")
	switch {
	case orig.StartTime.IsZero() && given.IsZero():
		return time.Time{}, &takeover.Error{Path: path, Problem: "is empty or missing (the original stopped while writing it?)",
			Fix: "start with --start-time set to the original's --start-time to continue where it stopped, " +
				"or give this daemon a --storage of its own and the --start-time it should send from"}
	case orig.StartTime.IsZero():
		return given, nil
	case !given.IsZero() && !given.Truncate(time.Second).Equal(orig.StartTime):
		return time.Time{}, &takeover.Error{Path: path,
			Problem: fmt.Sprintf("holds the original's start time %s, and --start-time is %s",
				orig.StartTime.Format(time.RFC3339), given.UTC().Format(time.RFC3339)),
			Fix: "drop --start-time (or give the original's) to continue where the original stopped, " +
				"or give this daemon a --storage of its own to send everything since " + given.UTC().Format(time.RFC3339)}
	}
	return orig.StartTime, nil
}

// report says what was taken over.
func (t takeOver) report(orig *takeover.Original, start time.Time, resume *takeover.Resume) {
	missing := 0
	for _, r := range orig.Recordings {
		if r.Missing {
			missing++
		}
	}
	ev := t.log.Info().Str("dir", orig.Dir).Time("start_time", start).
		Int("recordings", len(orig.Recordings)-missing).Int("recordings_not_found_yet", missing)
	if resume != nil {
		p := resume.Position
		ev = ev.Time("resume_at", p.WindowStart).Str("last_id", p.LastID).Str("resume", resume.How)
	} else {
		ev = ev.Int("export_days", len(orig.Export)).Str("resume", "the export API's chunks, as the original left them")
	}
	ev.Msg("took over the original Event Handler plugin's state; its files are left as they were")
}

// firstStart says where a first start found no state, this daemon's or the
// original plugin's: a switch whose storage points elsewhere than the
// original's would otherwise start at now without a word, and never send
// what happened since the original stopped.
func (t takeOver) firstStart(given time.Time) {
	ev := t.log.Warn()
	from := "now"
	if !given.IsZero() {
		ev, from = t.log.Info(), "--start-time"
	}
	ev.Str("dir", t.dir).Msg("first start: no state here, of this daemon or of the original plugin, so the audit log is read from " + from +
		"; if this daemon replaces the original, stop it and set storage to the original's storage directory (a relative one is taken from the working directory)")
}
