package daemon

import (
	"fmt"
	"os"
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
