package daemon

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/takeover"
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
// resolves the start time, taking over from the original plugin on a first
// start over its state. A dry run keeps its progress apart from the real
// one, in a temporary directory it removes at the end (it takes over into
// it, to show what a takeover would send).
func openState(ctx context.Context, cfg *config.Config, api takeover.Searcher, plan Plan, log zerolog.Logger) (*state, error) {
	original := persistence.Dir(cfg.Storage, cfg.Teleport.Addr)
	dir, cleanup := original, func() {}
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
	taker := takeOver{dir: original, store: store, api: api, log: log, retries: teleportRetries,
		query: takeover.Query{Types: plan.Audit.Types(), Batch: cfg.Batch, Window: cfg.WindowSize}}
	if st.start, err = taker.startTime(ctx, cfg.StartTime); err != nil {
		st.close()
		return nil, err
	}
	log.Info().Str("file", store.Path()).Time("start_time", st.start).Bool("dry_run", cfg.DryRun).Msg("state loaded")
	return st, nil
}

// storeStartTime stores the first run's start time: given, or now.
func storeStartTime(store *persistence.Store, given time.Time) (time.Time, error) {
	start := given
	if start.IsZero() {
		start = time.Now().UTC().Truncate(time.Second)
	}
	if err := store.Apply([]persistence.Write{persistence.StartTimeWrite(start)}); err != nil {
		return time.Time{}, err
	}
	return start, nil
}
