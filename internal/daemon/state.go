package daemon

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/state/takeover"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
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

// openState opens (creating) the state file of the Teleport cluster under
// --storage first, before anything is waited for, as a database takes its
// lock: held, it keeps a second daemon off the state at once, and tells
// the status command that a daemon runs here, which then asks it over the
// control socket, while it starts too. Nothing is stored before the start
// time is resolved (resolveStart): a start that fails before leaves an
// empty state. A dry run keeps its progress apart from the real one, in a
// temporary directory it removes at the end.
func openState(cfg *config.Config) (*state, error) {
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
	return &state{store: store, close: func() { store.Close(); cleanup() }}, nil
}

// resolveStart resolves the start time, taking over from the original
// plugin on a first start over its state (a dry run takes over into its
// temporary state, to show what a takeover would send).
func (st *state) resolveStart(ctx context.Context, cfg *config.Config, api takeover.Searcher, plan Plan, log zerolog.Logger) error {
	taker := takeOver{dir: persistence.Dir(cfg.Storage, cfg.Teleport.Addr), store: st.store, api: api, log: log, retries: teleportRetries,
		query: takeover.Query{Types: plan.Audit.Types(), Batch: cfg.Batch, Window: cfg.WindowSize}}
	start, err := taker.startTime(ctx, cfg.StartTime)
	if err != nil {
		return err
	}
	st.start = start
	log.Info().Str("file", st.store.Path()).Time("start_time", start).Bool("dry_run", cfg.DryRun).Msg("state loaded")
	return nil
}

// storeStartTime stores the first run's start time: given, or now.
func storeStartTime(store *persistence.Store, given time.Time) (time.Time, error) {
	start := given
	if start.IsZero() {
		start = time.Now().UTC().Truncate(time.Second)
	}
	if err := store.Apply([]kv.Write{persistence.StartTimeWrite(start)}); err != nil {
		return time.Time{}, err
	}
	return start, nil
}
