package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// StartTimeError reports a --start-time that differs from the stored one.
type StartTimeError struct {
	Given, Stored time.Time
	Path          string
}

func (e *StartTimeError) Error() string {
	return fmt.Sprintf("--start-time %s differs from the start time %s stored in %s by the first run; "+
		"drop --start-time to continue where the daemon left off, or remove %s to restart ingestion from the new time (events already sent are sent again)",
		e.Given.UTC().Format(time.RFC3339), e.Stored.UTC().Format(time.RFC3339), e.Path, e.Path)
}

// UpstreamStateError reports the original plugin's state where this daemon
// has none of its own, and no --start-time: starting at now would skip the
// events the original had not sent.
type UpstreamStateError struct {
	Dir       string
	StartTime string // as the original wrote it
}

func (e *UpstreamStateError) Error() string {
	return fmt.Sprintf("%s holds the state of the original Event Handler plugin (start_time %s) and none of this daemon's; "+
		"taking it over is not supported yet, and starting at now would skip the events the original had not sent: "+
		"start with --start-time %s to send everything since the original's start again (the events it had sent arrive twice), "+
		"or give this daemon a --storage of its own and the --start-time you want",
		e.Dir, e.StartTime, e.StartTime)
}

// upstreamFile is the original plugin's start time file (one file per key,
// in the same per-cluster directory).
const upstreamFile = "start_time"

// checkUpstream refuses a first start, without --start-time, over the
// original plugin's state (see UpstreamStateError), and warns when
// --start-time was given. The original's files are left as they are.
func checkUpstream(dir string, cfg *config.Config, log zerolog.Logger) error {
	if _, err := os.Stat(filepath.Join(dir, persistence.FileName)); !errors.Is(err, fs.ErrNotExist) {
		return nil // this daemon's own state exists (or cannot be told): not a first start
	}
	raw, err := os.ReadFile(filepath.Join(dir, upstreamFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the original plugin's %s: %w", filepath.Join(dir, upstreamFile), err)
	}
	start := strings.TrimSpace(string(raw))
	if cfg.StartTime.IsZero() {
		return &UpstreamStateError{Dir: dir, StartTime: start}
	}
	log.Warn().Str("dir", dir).Str("original_start_time", start).Time("start_time", cfg.StartTime).
		Msg("the original Event Handler plugin's state is here and is not taken over: events since --start-time are sent, those the original had sent again")
	return nil
}

// state is the opened state file and the start time it holds.
type state struct {
	store *persistence.Store
	start time.Time
	close func()
}

// openState opens the state of the Teleport cluster under --storage and
// resolves the start time. A dry run keeps its progress apart from the real
// one, in a temporary directory it removes at the end.
func openState(cfg *config.Config, log zerolog.Logger) (*state, error) {
	dir, cleanup := persistence.Dir(cfg.Storage, cfg.Teleport.Addr), func() {}
	if cfg.DryRun {
		tmp, err := os.MkdirTemp("", "teleport-event-handler-dry-run-")
		if err != nil {
			return nil, fmt.Errorf("dry run state: %w", err)
		}
		dir, cleanup = tmp, func() { os.RemoveAll(tmp) }
	} else if err := checkUpstream(dir, cfg, log); err != nil {
		return nil, err
	}
	store, err := persistence.Open(dir)
	if err != nil {
		cleanup()
		return nil, err
	}
	st := &state{store: store, close: func() { store.Close(); cleanup() }}
	if st.start, err = resolveStartTime(store, cfg.StartTime); err != nil {
		st.close()
		return nil, err
	}
	log.Info().Str("state", store.Path()).Time("start_time", st.start).Bool("dry_run", cfg.DryRun).Msg("state loaded")
	return st, nil
}

// resolveStartTime stores the start time on the first run (now, when none
// is given) and refuses a different one later.
func resolveStartTime(store *persistence.Store, given time.Time) (time.Time, error) {
	stored, ok, err := store.StartTime()
	if err != nil {
		return time.Time{}, err
	}
	switch {
	case ok && !given.IsZero() && !given.Equal(stored):
		return time.Time{}, &StartTimeError{Given: given, Stored: stored, Path: store.Dir()}
	case ok:
		return stored, nil
	}
	start := given
	if start.IsZero() {
		start = time.Now().UTC().Truncate(time.Second)
	}
	if err := store.Apply([]persistence.Write{persistence.StartTimeWrite(start)}); err != nil {
		return time.Time{}, err
	}
	return start, nil
}
