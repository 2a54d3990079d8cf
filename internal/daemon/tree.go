package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/checkpoint"
	"github.com/fdfwd/teleport-event-handler/actors/export"
	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/actors/poller"
	"github.com/fdfwd/teleport-event-handler/actors/pool"
	"github.com/fdfwd/teleport-event-handler/actors/root"
	"github.com/fdfwd/teleport-event-handler/actors/sessions"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/logging"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// tree is what the actor tree is made of.
type tree struct {
	cfg       *config.Config
	plan      Plan
	opts      Options
	log       zerolog.Logger
	metrics   *metrics.Metrics
	api       API
	cluster   string          // the Teleport cluster's name, "" if unknown
	exporter  export.Exporter // nil: the audit log is read with search
	transport wire.Transport  // nil with --dry-run
	store     *persistence.Store
	start     time.Time
}

// stopGrace is how much longer than the drain the stop sequence may take
// before the tree is declared stuck.
const stopGrace = 20 * time.Second

// runTree runs the actor tree until it stops by itself (--exit-on-last-event,
// or an actor gave up) or ctx is cancelled, then stops it in order.
func runTree(ctx context.Context, t tree) error {
	// Sends in progress are aborted when the drain at shutdown runs out of
	// time.
	sends, abortSends := context.WithCancel(context.Background())
	defer abortSends()
	kit := supervisor.NewKit(t.opts.Policy, t.log, t.metrics)
	defer kit.Workers.Close() // after the shutdown below
	system := actor.NewActorSystem(logging.ActorLogger(t.log, t.cfg.Debug))
	defer system.Shutdown()
	supervisor.CountUndelivered(system, t.metrics)
	t.metrics.Health.SetRunning(true)
	defer t.metrics.Health.SetRunning(false)
	reports := supervisor.Go(ctx, func(ctx context.Context) {
		t.metrics.RunReports(ctx, t.log, metrics.ReportOptions{Bar: t.cfg.ExitOnLastEvent && t.opts.Progress != nil, Out: t.opts.Progress, Start: t.start})
	})
	defer reports.Stop()

	drain := t.opts.DrainTimeout
	if drain <= 0 {
		drain = root.DefaultDrainTimeout
	}
	letters := persistence.NewDeadLetters(t.store.Dir())
	letters.SetLimit(int64(t.cfg.DeadLetterMaxMB) << 20)
	t.metrics.WatchDeadLetterFile(letters.Size)
	running, err := root.Start(system, root.Spec{Children: t.children(system, kit, sends, letters), Strategy: kit.Strategy,
		Log: t.log, DrainTimeout: drain, OnDrainTimeout: abortSends})
	if err != nil {
		return err
	}
	finished, err := running.Wait(ctx.Done(), drain+stopGrace)
	if errors.Is(err, root.ErrStuck) {
		abortSends()
		return errors.New("actors did not stop in time; exiting anyway (the next start resumes from the last checkpoint)")
	}
	if finished && (err == nil || errors.Is(err, root.ErrLeftUndone)) {
		return t.caughtUp(err, letters)
	}
	return err
}

// ErrIncomplete is the error of a run with --exit-on-last-event that caught
// up but did not deliver everything: events dead-lettered, recordings given
// up, export chunks parked. The command exits with status 3 for it, apart
// from a failure (1).
var ErrIncomplete = root.ErrLeftUndone

// caughtUp writes the exit line of a run that caught up
// (--exit-on-last-event), counting what was delivered and what was
// dead-lettered, and returns what was left undone, as ErrIncomplete.
func (t tree) caughtUp(undone error, letters *persistence.DeadLetters) error {
	totals := t.metrics.Totals()
	dead := letters.Count()
	if dead > 0 {
		err := fmt.Errorf("%d event(s) were dead-lettered in this run: see %s", dead, letters.Path())
		if undone == nil {
			undone = fmt.Errorf("%w: %w", ErrIncomplete, err)
		} else {
			undone = fmt.Errorf("%w; %w", undone, err)
		}
	}
	line := t.log.Info()
	msg := "all events up to now are delivered; exiting (--exit-on-last-event)"
	if undone != nil {
		line, msg = t.log.Warn(), "caught up, but not every event was delivered; exiting with status 3 (--exit-on-last-event)"
	}
	line.Float64("delivered", totals.Sent).Int("dead_lettered", dead).Msg(msg)
	return undone
}

// children are the root's children, in start order: the checkpoint writer
// first (it is stopped last), the pool, the taps, then the reader of the
// audit log. Each finds its siblings by name.
func (t tree) children(system *actor.ActorSystem, kit supervisor.Kit, sends context.Context, letters *persistence.DeadLetters) []root.Child {
	cfg, m := t.cfg, t.metrics
	ckpt, poolPID := root.PID(system, checkpoint.Name), root.PID(system, pool.Name)
	children := []root.Child{{Name: checkpoint.Name, Props: checkpoint.Props(checkpoint.Deps{Store: t.store, Log: t.log, Metrics: m, Kit: kit})}}
	if !cfg.DryRun {
		// The pool drains too: deliveries it took back out of the
		// dead-letter file have no requester waiting for them.
		children = append(children, root.Child{Name: pool.Name, Drain: true, Props: pool.Props(pool.Deps{
			Transport: t.transport, DeadLetters: letters,
			MaxConnections: cfg.Fluentd.MaxConnections, Batch: cfg.Fluentd.Batch, MaxBatchBytes: maxBatchBytes(cfg.Fluentd),
			Ctx: sends, Log: t.log, Kit: kit, Metrics: m,
		})})
	}
	taps := []inflight.Tap{{PID: root.PID(system, sessions.Name), Wants: sessions.Wants}}
	children = append(children, root.Child{Name: sessions.Name, Drain: true, Finishes: true, Props: sessions.Props(sessions.Deps{
		Sessions: t.api, Store: t.store, Checkpoint: ckpt, Pool: poolPID, URL: cfg.Fluentd.SessionURL, EncodeFor: func(sid string) inflight.Encode { return encodeFor(cfg, cfg.Fluentd.SessionURL, t.cluster, sid) },
		Filter: t.plan.Sessions, Concurrency: cfg.Concurrency, Window: t.plan.PlayerWindow,
		DryRun: cfg.DryRun, ExitOnLastEvent: cfg.ExitOnLastEvent, Kit: kit, Log: t.log, Metrics: m,
	})})
	if cfg.Lock.Enabled {
		if cfg.Lock.For == 0 {
			t.log.Warn().Msg("locks never expire (--lock-for 0, the original's default): a lock written by a brute force or a mistake stays until someone removes it; consider --lock-for")
		}
		taps = append(taps, inflight.Tap{PID: root.PID(system, lockpolicy.Name), Wants: lockpolicy.Wants})
		children = append(children, root.Child{Name: lockpolicy.Name, Props: lockpolicy.Props(lockpolicy.Deps{
			Locker: t.api, Store: t.store, Checkpoint: ckpt,
			Config: lockpolicy.Config{FailedAttempts: cfg.Lock.FailedAttempts, Period: cfg.Lock.Period, For: cfg.Lock.For,
				Exempt: set(cfg.Lock.ExemptUsers), MaxLocks: cfg.Lock.MaxLocks},
			DryRun: cfg.DryRun, Log: t.log, Metrics: m, Kit: kit,
		})})
	}
	return append(children, t.reader(ckpt, poolPID, taps, kit))
}

// reader is the child that reads the audit log: the export day-walker or
// the search poller.
func (t tree) reader(ckpt, poolPID *actor.PID, taps []inflight.Tap, kit supervisor.Kit) root.Child {
	cfg, m := t.cfg, t.metrics
	if t.exporter != nil {
		return root.Child{Name: export.Name, Drain: true, Finishes: true, Props: export.Props(export.Deps{
			Events: t.exporter, Store: t.store, Checkpoint: ckpt, Pool: poolPID, URL: cfg.Fluentd.URL, Encode: encodeFor(cfg, cfg.Fluentd.URL, t.cluster, ""),
			StartTime: t.start, Timeout: cfg.Timeout, Concurrency: cfg.Concurrency, Batch: cfg.Batch,
			Window: t.plan.ChunkWindow, Filter: t.plan.Audit, Taps: taps,
			DryRun: cfg.DryRun, ExitOnLastEvent: cfg.ExitOnLastEvent, Log: t.log, Metrics: m, Kit: kit,
		})}
	}
	return root.Child{Name: poller.Name, Drain: true, Finishes: true, Props: poller.Props(poller.Deps{
		Events: t.api, Store: t.store, Checkpoint: ckpt, Pool: poolPID, URL: cfg.Fluentd.URL, Encode: encodeFor(cfg, cfg.Fluentd.URL, t.cluster, ""),
		StartTime: t.start, WindowSize: cfg.WindowSize, Timeout: cfg.Timeout, Batch: cfg.Batch, GrowTo: growTo(cfg), Lag: cfg.LateEventLag,
		Filter: t.plan.Audit, Taps: taps, Window: t.plan.AuditWindow,
		DryRun: cfg.DryRun, ExitOnLastEvent: cfg.ExitOnLastEvent, Log: t.log, Metrics: m, Kit: kit,
	})}
}

// maxBatchBytes caps the events of one batch: the pool's default, and no
// more than a forward message may take (--fluentd-max-message-kb; the
// transport splits a batch whose message is larger still).
func maxBatchBytes(f config.FluentdConfig) int {
	if f.UsesForward() {
		return min(pool.DefaultMaxBatchBytes, f.MaxMessageKB<<10)
	}
	return pool.DefaultMaxBatchBytes
}

// growTo is the size the poller's pages may grow to: --batch given is the
// user's choice, kept as given.
func growTo(cfg *config.Config) int {
	if cfg.GrowBatch {
		return config.GrowBatchTo
	}
	return 0
}
