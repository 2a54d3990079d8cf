package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/rs/zerolog"
)

// StuckAfter is how long, by default, Fluentd may fail every send, a
// Teleport reader every call, or a checkpoint stay unwritten, before /readyz
// says the daemon is not ready (--ready-grace).
const StuckAfter = time.Minute

// Health is what /healthz and /readyz report. Actors update it as they go;
// every method is safe for concurrent use.
type Health struct {
	mu              sync.Mutex
	now             func() time.Time
	grace           time.Duration // StuckAfter when zero
	phase           phase
	waitingFor      string             // while starting: what for, e.g. "waiting for Fluentd at ..."
	teleport        map[string]failing // by reader: the ones failing now
	fluentdFailing  time.Time          // first failure since the last success; zero when fine
	fluentdErr      string
	fluentdRefused  string    // the receiver refuses service: not ready at once (a fixed reason)
	deadLetters     error     // the dead-letter file takes no more letters
	checkpointSince time.Time // oldest checkpoint not yet written; zero when none
	lastCheckpoint  time.Time
}

// SetGrace sets how long a failing part is ridden out (--ready-grace).
func (h *Health) SetGrace(d time.Duration) {
	h.mu.Lock()
	h.grace = d
	h.mu.Unlock()
}

// stuck reports whether a part failing since since has failed too long; mu
// must be held.
func (h *Health) stuck(since, now time.Time) bool {
	grace := h.grace
	if grace <= 0 {
		grace = StuckAfter
	}
	return !since.IsZero() && now.Sub(since) > grace
}

// phase is where the daemon is in its life.
type phase int

const (
	// starting: connecting to Teleport and Fluentd, waiting for them as
	// long as they are down, opening the state; the actor tree is not
	// running yet.
	starting phase = iota
	running
	stopped // the actor tree has stopped: the process is about to exit
)

// Starting says what the daemon waits for before its actor tree runs:
// "waiting for Fluentd at https://fluentd:8888/teleport.log". It changes
// nothing once the tree has run.
func (h *Health) Starting(what string) {
	h.mu.Lock()
	if h.phase == starting {
		h.waitingFor = what
	}
	h.mu.Unlock()
}

// WaitingFor is what the daemon waits for while it starts (empty when it
// has not said), and false once its actor tree has run.
func (h *Health) WaitingFor() (what string, isStarting bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waitingFor, h.phase == starting
}

// SetRunning says that the actor tree runs (true) or has stopped (false).
func (h *Health) SetRunning(v bool) {
	h.mu.Lock()
	h.phase, h.waitingFor = stopped, ""
	if v {
		h.phase = running
	}
	h.mu.Unlock()
}

// startingReason is the reason of both probes while starting; mu must be
// held.
func (h *Health) startingReason() string {
	if h.waitingFor == "" {
		return "starting"
	}
	return "starting: " + h.waitingFor
}

// failing is a part failing since a time, with its last error.
type failing struct {
	since time.Time
	err   error
}

// TeleportCall records the outcome of a Teleport API call made by reader
// (an actor's name): a reader failing every call for the grace makes the
// daemon unready, whatever the other readers do, as a long Fluentd outage
// does; a single failed call does not.
func (h *Health) TeleportCall(reader string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.teleport, reader)
		return
	}
	if h.teleport == nil {
		h.teleport = map[string]failing{}
	}
	f, ok := h.teleport[reader]
	if !ok {
		f.since = h.clock()
	}
	f.err = err
	h.teleport[reader] = f
}

// TeleportDone forgets a reader that stopped.
func (h *Health) TeleportDone(reader string) {
	h.mu.Lock()
	delete(h.teleport, reader)
	h.mu.Unlock()
}

// teleportStuck is the error of the reader failing longest, if it has
// failed for the grace; mu must be held.
func (h *Health) teleportStuck(now time.Time) (error, time.Duration) {
	var worst *failing
	for _, f := range h.teleport {
		if worst == nil || f.since.Before(worst.since) {
			worst = &f
		}
	}
	if worst == nil || !h.stuck(worst.since, now) {
		return nil, 0
	}
	return worst.err, now.Sub(worst.since)
}

// FluentdSend records the outcome of a send (an HTTP POST or a forward
// message): nil for an answer that settled
// the event (2xx or a permanent rejection), else the cause of the retry.
func (h *Health) FluentdSend(cause error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cause == nil {
		h.fluentdFailing, h.fluentdErr, h.fluentdRefused = time.Time{}, "", ""
		return
	}
	if h.fluentdFailing.IsZero() {
		h.fluentdFailing = h.clock()
	}
	h.fluentdErr = cause.Error()
}

// FluentdRefused records that the receiver refuses service whatever the
// events (a redirect, 401, 403, ...), or (everyEvent) rejects every event
// (a circuit breaker opened): unlike a failure that may pass, the daemon is
// not ready from the first such answer until a send succeeds. /readyz says
// so with a fixed reason and the status: never the receiver's answer, which
// the logs have.
func (h *Health) FluentdRefused(status int, everyEvent bool) {
	reason := fmt.Sprintf("fluentd: the receiver refuses service (status %d: a redirect, 401, 403, 404, 405, 407, 415 or 421 is about the URL, credentials or a proxy, not the events)", status)
	if everyEvent {
		reason = fmt.Sprintf("fluentd: the receiver rejects every event (status %d); the events wait: %s", status, rejectHint(status))
	}
	h.FluentdSend(errors.New(reason))
	h.mu.Lock()
	h.fluentdRefused = reason
	h.mu.Unlock()
}

// rejectHint is the likely cause of a receiver rejecting every event.
func rejectHint(status int) string {
	switch status {
	case 400:
		return "an in_http <source> without <parse> @type json </parse> answers 400 to every Teleport event"
	case 413:
		return "every request is over the receiver's body size limit: raise it, or lower --fluentd-batch"
	}
	return "check the receiver's configuration"
}

// DeadLetters records whether the dead-letter file took the last letter:
// a full file makes the daemon unready at once, until a letter is written.
func (h *Health) DeadLetters(err error) {
	h.mu.Lock()
	h.deadLetters = err
	h.mu.Unlock()
}

// CheckpointPending records that a checkpoint waits to be written.
func (h *Health) CheckpointPending() {
	h.mu.Lock()
	if h.checkpointSince.IsZero() {
		h.checkpointSince = h.clock()
	}
	h.mu.Unlock()
}

// CheckpointWritten records that every pending checkpoint is on disk.
func (h *Health) CheckpointWritten() {
	h.mu.Lock()
	h.checkpointSince, h.lastCheckpoint = time.Time{}, h.clock()
	h.mu.Unlock()
}

func (h *Health) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

// Live reports whether the process works as designed: while it starts,
// however long it waits for Fluentd or Teleport (a restart would only
// start the wait again), and while its actor tree runs; not once the tree
// has stopped.
func (h *Health) Live() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.phase {
	case starting:
		return true, h.startingReason()
	case stopped:
		return false, "the actor tree has stopped"
	}
	return true, "running"
}

// Ready reports whether the daemon is doing its job, and why not.
func (h *Health) Ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock()
	teleportErr, teleportFor := h.teleportStuck(now)
	// Fixed reasons with durations only: the errors' detail (the
	// receiver's answers) is in the logs, not on this endpoint. The one
	// address said is the one a starting daemon waits for, the first
	// thing to check.
	switch {
	case h.phase == starting:
		return false, h.startingReason()
	case h.phase == stopped:
		return false, "the actor tree has stopped"
	case teleportErr != nil:
		return false, fmt.Sprintf("teleport: every call has failed for %s (see the log for the error)", teleportFor.Round(time.Second))
	case h.fluentdRefused != "":
		return false, h.fluentdRefused
	case h.deadLetters != nil:
		return false, "dead letters: the dead-letter file is full (--dead-letter-max-mb): rejected events wait until it is dealt with"
	case h.stuck(h.fluentdFailing, now):
		return false, fmt.Sprintf("fluentd: every send has failed for %s (see the log for the error)", now.Sub(h.fluentdFailing).Round(time.Second))
	case h.stuck(h.checkpointSince, now):
		return false, fmt.Sprintf("checkpoint: not written for %s", now.Sub(h.checkpointSince).Round(time.Second))
	}
	return true, "ready"
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("/healthz", status(m.Health.Live))
	mux.HandleFunc("/readyz", status(m.Health.Ready))
	return mux
}

func status(check func() (bool, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		ok, reason := check()
		w.Header().Set("Content-Type", "application/json")
		code := http.StatusOK
		if !ok {
			code = http.StatusServiceUnavailable
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": ok, "reason": reason})
	}
}

// Serve serves Handler on addr until stop is called. With webConfig (an
// exporter-toolkit web configuration file) the listener has its TLS,
// client certificates and basic auth, as Prometheus exporters do.
func (m *Metrics) Serve(addr, webConfig string, log zerolog.Logger) (stop func(), err error) {
	return serve("--metrics-addr", addr, webConfig, m.Handler(), "/metrics, /healthz and /readyz", log)
}

// ServeHealth serves /healthz and /readyz alone on addr, without a web
// configuration: for probes (a kubelet presents no client certificate and
// no password) when /metrics is secured.
func (m *Metrics) ServeHealth(addr string, log zerolog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", status(m.Health.Live))
	mux.HandleFunc("/readyz", status(m.Health.Ready))
	return serve("--health-addr", addr, "", mux, "/healthz and /readyz", log)
}

// hardened is an HTTP server that slow, idle or oversized clients cannot
// hold: scrapes and probes are small and quick.
func hardened(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: MaxHeaderBytes}
}

// MaxHeaderBytes bounds a request's headers on the metrics, health and
// control servers.
const MaxHeaderBytes = 8 << 10

func serve(flag, addr, webConfig string, h http.Handler, what string, log zerolog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w; choose a free port", flag, addr, err)
	}
	srv := hardened(h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if webConfig != "" {
			flags := &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebConfigFile: &webConfig}
			err = web.Serve(ln, srv, flags, slog.New(zerolog.NewSlogHandler(log.Level(zerolog.WarnLevel))))
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Str("addr", addr).Msg("metrics server failed")
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Bool("secured", webConfig != "").Msg("serving " + what)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}
