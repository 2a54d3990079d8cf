// Package daemon wires the daemon together: it connects to Teleport and
// Fluentd, opens the state, and runs the actor tree until it stops.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/trace"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/actors/checkpoint"
	"github.com/fdfwd/teleport-event-handler/actors/export"
	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/actors/poller"
	"github.com/fdfwd/teleport-event-handler/actors/pool"
	"github.com/fdfwd/teleport-event-handler/actors/root"
	"github.com/fdfwd/teleport-event-handler/actors/sessions"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/backoff"
	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/fluentd"
	"github.com/fdfwd/teleport-event-handler/logging"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/teleport"
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

// Options are the knobs that are not in the configuration, for tests.
type Options struct {
	Policy       supervisor.Policy
	DrainTimeout time.Duration
	// Teleport, when set, replaces the connection to Teleport.
	Teleport API
	// Metrics, when set, replaces the daemon's own (tests read them).
	Metrics *metrics.Metrics
	// Progress is where a backfill with --exit-on-last-event draws its
	// progress bar (a terminal); nil logs progress lines instead.
	Progress io.Writer
}

// API is what the actors call on Teleport.
type API interface {
	poller.Searcher
	sessions.Streamer
	lockpolicy.Locker
}

// Run connects to Teleport and Fluentd, starts the actor tree and blocks
// until ctx is cancelled (a graceful stop), the stream is done
// (--exit-on-last-event) or the tree gives up. It returns nil after a clean
// stop.
func Run(ctx context.Context, cfg *config.Config, log zerolog.Logger, opts Options) error {
	m := opts.Metrics
	if m == nil {
		m = metrics.New()
	}
	if cfg.MetricsAddr != "" {
		stop, err := m.Serve(cfg.MetricsAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	events := opts.Teleport
	if events == nil {
		conn, err := teleport.Connect(ctx, cfg.Teleport)
		if err != nil {
			return err
		}
		defer conn.Close()
		log.Info().Str("addr", cfg.Teleport.Addr).Str("cluster", conn.Ping.ClusterName).
			Str("version", conn.Ping.ServerVersion).Msg("connected to teleport")
		if cfg.Teleport.RefreshEnabled {
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go conn.RunRefresh(rctx, cfg.Teleport.RefreshInterval, log, func(err error) {
				if err != nil {
					m.IdentityReloads.WithLabelValues("error").Inc()
					return
				}
				m.IdentityReloads.WithLabelValues("ok").Inc()
			})
		}
		events = conn
	}

	var transport fluentd.Transport
	if !cfg.DryRun {
		tlsCfg, err := fluentd.TLSConfig(cfg.Fluentd.CA, cfg.Fluentd.Cert, cfg.Fluentd.Key)
		if err != nil {
			return err
		}
		transport = fluentd.NewHTTP(tlsCfg, cfg.Fluentd.MaxConnections)
		defer transport.Close()
		checked := map[string]bool{}
		for _, u := range []string{cfg.Fluentd.URL, cfg.Fluentd.SessionURL} {
			// The handshake depends on the endpoint only, and both URLs
			// usually name the same one.
			if pu, err := url.Parse(u); err == nil {
				if checked[pu.Host] {
					continue
				}
				checked[pu.Host] = true
			}
			if err := fluentd.WaitReady(ctx, transport, u, log); err != nil {
				if ctx.Err() != nil {
					return nil // stopped while waiting: nothing was started
				}
				return err
			}
		}
	}

	dir := persistence.Dir(cfg.Storage, cfg.Teleport.Addr)
	if cfg.DryRun {
		// A dry run keeps its progress apart from the real one and throws
		// it away.
		tmp, err := os.MkdirTemp("", "teleport-event-handler-dry-run-")
		if err != nil {
			return fmt.Errorf("dry run state: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	store, err := persistence.Open(dir)
	if err != nil {
		return err
	}
	defer store.Close()
	start, err := resolveStartTime(store, cfg.StartTime)
	if err != nil {
		return err
	}
	log.Info().Str("state", store.Path()).Time("start_time", start).Bool("dry_run", cfg.DryRun).Msg("state loaded")
	exporter, err := chooseExport(ctx, cfg.ExportMode, cfg.Teleport.Addr, events, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while probing: nothing was started
		}
		return err
	}
	if exporter == nil {
		// After the export path ran, search starts at the day it was
		// walking, not from its own older position.
		seed, ok, err := export.SearchSeed(store)
		if err != nil {
			return err
		}
		if ok {
			if err := store.Apply([]persistence.Write{persistence.AuditPositionWrite(seed)}); err != nil {
				return err
			}
			log.Info().Time("window_start", seed.WindowStart).Msg("search resumes at the day the export path was reading")
		}
	}

	sendCtx, abortSends := context.WithCancel(context.Background())
	defer abortSends()
	kit := supervisor.NewKit(opts.Policy, log, m)
	strategy := kit.Strategy
	system := actor.NewActorSystem(logging.ActorLogger(log, cfg.Debug))
	defer system.Shutdown()
	supervisor.CountDeadLetters(system, m)
	m.Health.SetRunning(true)
	defer m.Health.SetRunning(false)
	rctx, stopReports := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		m.RunReports(rctx, log, metrics.ReportOptions{Bar: cfg.ExitOnLastEvent && opts.Progress != nil, Out: opts.Progress, Start: start})
	}()
	defer func() { stopReports(); <-reported }()
	// A child's props: supervised by the strategy, counted by kind.
	childOpts := kit.Options

	// The lock policy needs failed logins even when --types leaves them
	// out: fetch them, but do not forward them.
	types, skip := cfg.Types, set(cfg.SkipEventTypes)
	if cfg.Lock.Enabled && len(types) > 0 && !slices.Contains(types, lockpolicy.LoginEvent) {
		types = append(slices.Clone(types), lockpolicy.LoginEvent)
		skip[lockpolicy.LoginEvent] = true
	}
	// The in-flight windows are sized on what the pool carries at once.
	capacity := max(cfg.Fluentd.MaxConnections, 1) * max(cfg.Fluentd.Batch, 1)
	done := make(chan error, 1)
	spec := root.Spec{
		Strategy:       strategy,
		Log:            log,
		Done:           done,
		DrainTimeout:   opts.DrainTimeout,
		OnDrainTimeout: abortSends,
		Children: func() []root.Child {
			var ckpt, poolPID *actor.PID
			children := []root.Child{{
				Name: checkpoint.Name, Props: checkpoint.Props(store, log, m, childOpts("checkpoint")...), Bind: func(p *actor.PID) { ckpt = p },
			}}
			if !cfg.DryRun {
				children = append(children, root.Child{
					Name: pool.Name, Bind: func(p *actor.PID) { poolPID = p },
					Props: pool.Props(pool.Deps{
						Transport: transport, DeadLetters: persistence.NewDeadLetters(store.Dir()),
						MaxConnections: cfg.Fluentd.MaxConnections, Batch: cfg.Fluentd.Batch,
						Ctx: sendCtx, Log: log, Kit: kit, Metrics: m,
					}),
				})
			}
			// Deps are read when each child is spawned, after the PIDs of
			// the children before it are bound.
			var taps []poller.Tap
			children = append(children, root.Child{
				Name: sessions.Name, Drain: true, Finishes: true,
				Bind: func(p *actor.PID) { taps = append(taps, poller.Tap{PID: p, Wants: sessions.Wants}) },
				Props: actor.PropsFromProducer(func() actor.Actor {
					return sessions.New(sessions.Deps{
						Sessions: events, Store: store, Checkpoint: ckpt, Pool: poolPID, URL: cfg.Fluentd.SessionURL,
						Skip: set(cfg.SkipSessionTypes), Concurrency: cfg.Concurrency,
						Window: sessions.WindowFor(capacity, cfg.Concurrency),
						DryRun: cfg.DryRun, ExitOnLastEvent: cfg.ExitOnLastEvent, Kit: kit, Log: log, Metrics: m,
					})
				}, childOpts("sessions")...),
			})
			if cfg.Lock.Enabled {
				children = append(children, root.Child{
					Name: lockpolicy.Name,
					Bind: func(p *actor.PID) { taps = append(taps, poller.Tap{PID: p, Wants: lockpolicy.Wants}) },
					Props: lockpolicy.Props(lockpolicy.Deps{
						Locker: events, Store: store,
						Config: lockpolicy.Config{FailedAttempts: cfg.Lock.FailedAttempts, Period: cfg.Lock.Period, For: cfg.Lock.For},
						DryRun: cfg.DryRun, Log: log, Metrics: m,
					}, childOpts("lockpolicy")...),
				})
			}
			if exporter != nil {
				// Taps see every event on this path, so --types is applied
				// here as given; the lock policy gets its failed logins.
				children = append(children, root.Child{Name: export.Name, Drain: true, Finishes: true, Props: actor.PropsFromProducer(func() actor.Actor {
					return export.New(export.Deps{
						Events: exporter, Store: store, Checkpoint: ckpt, Pool: poolPID, URL: cfg.Fluentd.URL,
						StartTime: start, Timeout: cfg.Timeout, Concurrency: cfg.Concurrency, Batch: cfg.Batch,
						Window: max(poller.WindowFor(capacity, cfg.Batch)/cfg.Concurrency, cfg.Batch),
						Types:  typesSet(cfg.Types), Skip: skip, Taps: taps,
						DryRun: cfg.DryRun, ExitOnLastEvent: cfg.ExitOnLastEvent, Log: log, Metrics: m,
						ReaderProps: childOpts("export-reader"),
					})
				}, childOpts("export")...)})
				return children
			}
			children = append(children, root.Child{Name: poller.Name, Drain: true, Finishes: true, Props: actor.PropsFromProducer(func() actor.Actor {
				return poller.New(poller.Deps{
					Events: events, Store: store, Checkpoint: ckpt, Pool: poolPID, URL: cfg.Fluentd.URL,
					StartTime: start, WindowSize: cfg.WindowSize, Timeout: cfg.Timeout, Batch: cfg.Batch,
					Types: types, Skip: skip, Taps: taps, Window: poller.WindowFor(capacity, cfg.Batch),
					DryRun: cfg.DryRun, ExitOnLastEvent: cfg.ExitOnLastEvent, Log: log, Metrics: m,
				})
			}, childOpts("poller")...)})
			return children
		},
	}
	pid, err := system.Root.SpawnNamed(root.Props(spec), "root")
	if err != nil {
		return fmt.Errorf("start actor tree: %w", err)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		system.Root.Send(pid, &messages.Shutdown{Reason: "signal"})
	}
	// The drain is bounded by DrainTimeout; give the stop sequence a little
	// more before declaring it stuck.
	select {
	case err := <-done:
		return err
	case <-time.After(spec.DrainTimeout + 20*time.Second):
		abortSends()
		return errors.New("actors did not stop in time; exiting anyway (the next start resumes from the last checkpoint)")
	}
}

// resolveStartTime stores the start time on the first run and refuses a
// different one later.
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

// typesSet is nil (every type) for an empty --types.
func typesSet(list []string) map[string]bool {
	if len(list) == 0 {
		return nil
	}
	return set(list)
}

// chooseExport decides between the export API and search: --export-mode
// search forces search without asking; auto probes the export API and falls
// back to search when Teleport answers NotImplemented (an older server);
// export probes too, so that a server without the API is refused at start
// rather than retried for ever. A probe that fails because Teleport is
// unreachable or busy is repeated until it answers; other failures end the
// start after three tries. Nil means search.
func chooseExport(ctx context.Context, mode, addr string, api API, log zerolog.Logger) (export.Exporter, error) {
	if mode == config.ExportSearch {
		log.Info().Msg("reading the audit log with search (--export-mode search)")
		return nil, nil
	}
	ex, ok := api.(export.Exporter)
	if !ok {
		if mode == config.ExportExport {
			return nil, errors.New("--export-mode export: this Teleport client has no export API; use --export-mode search or auto")
		}
		return nil, nil
	}
	hard := 0 // failures other than Teleport being unreachable or busy
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(probeRetries.Delay(attempt)):
			}
		}
		err := probeExport(ctx, ex)
		switch {
		case err == nil:
			log.Info().Str("export_mode", mode).Msg("reading the audit log with the export API")
			return ex, nil
		case trace.IsNotImplemented(err):
			if mode == config.ExportExport {
				return nil, fmt.Errorf("--export-mode export: Teleport at %s has no export API (it answered NotImplemented to GetEventExportChunks; Teleport 15.4+ has it); use --export-mode auto or search", addr)
			}
			log.Info().Msg("Teleport has no export API; reading the audit log with search")
			return nil, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case teleport.Transient(err):
			// Teleport answers Ping but not this yet (restarting, busy):
			// wait for it as for any other call.
			log.Warn().Err(err).Int("attempt", attempt+1).Msg("probing Teleport's export API failed; retrying")
			continue
		}
		if hard++; hard == 3 {
			return nil, fmt.Errorf("probe Teleport's export API at %s (--export-mode %s): %w; use --export-mode search to read with search without the probe", addr, mode, err)
		}
	}
}

// probeRetries is the wait between probes of the export API.
var probeRetries = backoff.Policy{Initial: time.Second, Max: 30 * time.Second}

// probeExport lists today's export chunks.
func probeExport(ctx context.Context, ex export.Exporter) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st := ex.GetEventExportChunks(pctx, &auditlogpb.GetEventExportChunksRequest{Date: timestamppb.New(time.Now().UTC())})
	for st.Next() {
	}
	if err := st.Done(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}
