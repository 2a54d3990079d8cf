// Package daemon runs the daemon: a short sequence of phases, each in a
// file of its own. Open the state and serve the status command (state.go,
// control.go), connect to Teleport and Fluentd (connect.go), resolve the
// start time (state.go, takeover.go), choose the read path (readpath.go),
// plan the windows and filters (plan.go), and run the actor tree until it
// stops (tree.go).
package daemon

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/export"
	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/actors/poller"
	"github.com/fdfwd/teleport-event-handler/actors/sessions"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

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
	// Version is this daemon's, for build_info.
	Version string
}

// API is what the actors call on Teleport.
type API interface {
	poller.Searcher
	sessions.Streamer
	lockpolicy.Locker
}

// Run opens the state, connects to Teleport and Fluentd, starts the actor
// tree and blocks until ctx is cancelled (a graceful stop), the stream is
// done (--exit-on-last-event) or the tree gives up. It returns nil after a
// clean stop, and after a stop while it was still waiting for Teleport,
// Fluentd or Teleport's export API (nothing was started). While it starts,
// the probes and the status command say what it waits for.
func Run(ctx context.Context, cfg *config.Config, log zerolog.Logger, opts Options) error {
	m := opts.Metrics
	if m == nil {
		m = metrics.New()
	}
	m.Health.SetGrace(cfg.ReadyGrace)
	m.SetBuild(opts.Version)
	m.SetOutputs([]metrics.Output{
		{Stream: metrics.Audit, URL: cfg.Fluentd.URL, Protocol: config.Protocol(cfg.Fluentd.URL)},
		{Stream: metrics.Session, URL: cfg.Fluentd.SessionURL, Protocol: config.Protocol(cfg.Fluentd.SessionURL)},
	})
	stopMetrics, err := serveMetrics(cfg, m, log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	st, err := openState(cfg)
	if err != nil {
		return err
	}
	defer st.close()
	m.Health.Starting("waiting for Teleport at " + cfg.Teleport.Addr)
	defer serveControl(st.store, m, log)()

	api, cluster, closeTeleport, err := connectTeleport(ctx, cfg, opts, m, log)
	if err != nil {
		return quiet(err)
	}
	defer closeTeleport()
	transport, err := connectFluentd(ctx, cfg, m, log)
	if err != nil {
		return quiet(err)
	}
	if transport != nil {
		defer transport.Close()
	}
	exporter, plan, err := prepare(ctx, cfg, api, st, m, log)
	if err != nil {
		return quiet(err)
	}
	return runTree(ctx, tree{
		cfg: cfg, plan: plan, opts: opts, log: log, metrics: m,
		api: api, cluster: cluster, exporter: exporter, transport: transport, store: st.store, start: st.start,
	})
}

// prepare resolves the start time (taking over from the original plugin
// on a first start over its state), plans, and chooses the read path,
// which it stores: nil is search.
func prepare(ctx context.Context, cfg *config.Config, api API, st *state, m *metrics.Metrics, log zerolog.Logger) (export.Exporter, Plan, error) {
	plan := planFor(cfg)
	m.Health.Starting("loading the state")
	if err := st.resolveStart(ctx, cfg, api, plan, log); err != nil {
		return nil, plan, err
	}
	if cfg.ExportMode != config.ExportSearch {
		m.Health.Starting("probing Teleport's export API at " + cfg.Teleport.Addr)
	}
	exporter, err := chooseReadPath(ctx, cfg, api, st.store, log)
	if err != nil {
		return nil, plan, err
	}
	readPath := "search"
	if exporter != nil {
		readPath = "export"
	}
	return exporter, plan, st.store.Apply([]kv.Write{persistence.ReadPathWrite(readPath)})
}

// errStopped ends a phase that was waiting (for Teleport, for Fluentd, for
// Teleport's export API) when the daemon was asked to stop: nothing was started, and
// the stop is clean.
var errStopped = errors.New("stopped while waiting")

// quiet is err, but nil for errStopped.
func quiet(err error) error {
	if errors.Is(err, errStopped) {
		return nil
	}
	return err
}

// serveMetrics serves /metrics, /healthz and /readyz on --metrics-addr,
// if set (secured with --web-config-file), and the probes alone on
// --health-addr.
func serveMetrics(cfg *config.Config, m *metrics.Metrics, log zerolog.Logger) (stop func(), err error) {
	stops := []func(){}
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, srv := range []struct {
		addr  string
		serve func() (func(), error)
	}{
		{cfg.MetricsAddr, func() (func(), error) { return m.Serve(cfg.MetricsAddr, cfg.WebConfigFile, log) }},
		{cfg.HealthAddr, func() (func(), error) { return m.ServeHealth(cfg.HealthAddr, log) }},
	} {
		if srv.addr == "" {
			continue
		}
		stop, err := srv.serve()
		if err != nil {
			stopAll()
			return nil, err
		}
		stops = append(stops, stop)
	}
	return stopAll, nil
}
