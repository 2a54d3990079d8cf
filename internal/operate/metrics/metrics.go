// Package metrics holds the daemon's Prometheus metrics, in a private
// registry, with the health probes and the progress reports. It knows
// nothing of actors: the actors feed it, and supervisor.Kit counts the
// actors themselves.
//
// Every label has a small, fixed set of values: actor kinds, stream names,
// status classes. Session IDs never become labels, so short-lived players
// leave nothing behind.
package metrics

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/gravitational/trace"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "teleport_event_handler"

// Stream names, the "stream" label.
const (
	Audit   = "audit"
	Session = "session"
)

// Metrics are the daemon's metrics. The zero value is not usable; use New.
type Metrics struct {
	Registry *prometheus.Registry
	Health   *Health

	// Actors.
	ActorsLive          *prometheus.GaugeVec   // kind
	ActorRestarts       *prometheus.CounterVec // kind, reason
	SupervisorDecisions *prometheus.CounterVec // kind, decision
	MailboxDepth        *prometheus.GaugeVec   // kind
	UndeliveredMessages prometheus.Counter

	// Pipeline.
	EventsFetched      *prometheus.CounterVec // stream
	EventsSent         *prometheus.CounterVec // stream
	EventsRetried      *prometheus.CounterVec // stream
	EventsDeadLettered *prometheus.CounterVec // stream
	EventsSkipped      *prometheus.CounterVec // stream, reason
	SendsInFlight      prometheus.Gauge
	PoolCapacity       prometheus.Gauge
	SendDuration       prometheus.Histogram
	BatchEvents        prometheus.Histogram
	FetchToAck         *prometheus.HistogramVec // stream
	FluentdResponses   *prometheus.CounterVec   // class
	CheckpointWrites   *prometheus.CounterVec   // result
	CheckpointDuration prometheus.Histogram
	AckedEventTime     prometheus.Gauge

	SessionsActive   prometheus.Gauge
	SessionsQueued   prometheus.Gauge
	SessionsFinished prometheus.Counter
	SessionsGivenUp  *prometheus.CounterVec // reason: not_found, failing

	ExportChunksParked prometheus.Gauge

	LocksCreated        prometheus.Counter
	LocksCapped         prometheus.Counter
	LockFailuresIgnored *prometheus.CounterVec // reason: user_name_too_long, unwritable
	IdentityReloads     *prometheus.CounterVec // result
	// FluentdCertificateReloads counts changes of the Fluentd CA,
	// certificate and key files, by whether they loaded.
	FluentdCertificateReloads *prometheus.CounterVec // result
	// OutputInfo is 1 for each stream, labelled with the protocol it is
	// sent with (SetOutputs).
	OutputInfo *prometheus.GaugeVec // stream, protocol
	// SyslogResent counts messages written again after a syslog+tls
	// connection broke before they were known received.
	SyslogResent prometheus.Counter
	outputs      atomic.Pointer[[]Output]
	// IdentityExpiresAt is when the Teleport identity in use expires.
	IdentityExpiresAt prometheus.Gauge
	// BuildInfo is 1, labelled with this daemon's version and Go's
	// (SetBuild).
	BuildInfo      *prometheus.GaugeVec
	TeleportErrors *prometheus.CounterVec // method, code
	// TeleportSearches counts search requests by cursor (live, trail): the
	// read cost of --late-event-lag; AuditLateEvents the late events the
	// trailing cursor found.
	TeleportSearches *prometheus.CounterVec
	AuditLateEvents  prometheus.Counter

	// pendingUnix is the time of the oldest audit event not yet confirmed
	// (0: none, the reader is caught up), for the lag at scrape time;
	// reported says a reader has set it.
	pendingUnix atomic.Int64
	reported    atomic.Bool
	ackedUnix   atomic.Int64 // the newest checkpointed event, for progress
	// deadLetterSize reads the size of the dead-letter file at scrape time.
	deadLetterSize atomic.Pointer[func() int64]
	// fluentdValidity is WatchFluentdCertificate's.
	fluentdValidity atomic.Pointer[func() (issued, expires time.Time)]
}

// WatchDeadLetterFile makes dead_letter_file_bytes report size() at each
// scrape.
func (m *Metrics) WatchDeadLetterFile(size func() int64) { m.deadLetterSize.Store(&size) }

// WatchFluentdCertificate makes fluentd_certificate_issued_at_seconds and
// fluentd_certificate_expires_at_seconds report validity() at each scrape:
// the files as they are then, not as the last connection read them.
func (m *Metrics) WatchFluentdCertificate(validity func() (issued, expires time.Time)) {
	m.fluentdValidity.Store(&validity)
}

// fluentdValidityGauge is one end of the Fluentd client certificate's
// validity, 0 before WatchFluentdCertificate.
func (m *Metrics) fluentdValidityGauge(end func(issued, expires time.Time) time.Time) func() float64 {
	return func() float64 {
		v := m.fluentdValidity.Load()
		if v == nil {
			return 0
		}
		if t := end((*v)()); !t.IsZero() {
			return float64(t.Unix())
		}
		return 0
	}
}

// SetBuild sets build_info for this daemon's version.
func (m *Metrics) SetBuild(version string) {
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// New returns the metrics registered in a fresh registry, with the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), Health: &Health{}}
	f := factory{m.Registry}
	m.ActorsLive = f.gaugeVec("actors", "Actors alive, by kind.", "kind")
	m.ActorRestarts = f.counterVec("actor_restarts_total", "Actor failures that led to a restart, by kind and reason (panic, error, runtime).", "kind", "reason")
	m.SupervisorDecisions = f.counterVec("supervisor_decisions_total", "Supervisor decisions about failed actors, by kind and decision (restart, stop).", "kind", "decision")
	m.MailboxDepth = f.gaugeVec("mailbox_messages", "Messages in actor mailboxes, the one being processed included, by kind.", "kind")
	m.UndeliveredMessages = f.counter("actor_undelivered_messages_total", "Messages sent to actors that no longer exist, which protoactor drops (normal at shutdown; a steady rise is not).")

	m.EventsFetched = f.counterVec("events_fetched_total", "Events read from Teleport, by stream (audit, session).", "stream")
	m.EventsSent = f.counterVec("events_sent_total", "Events Fluentd accepted, by stream.", "stream")
	m.EventsRetried = f.counterVec("events_retried_total", "Send attempts that failed and were retried, by stream.", "stream")
	m.EventsDeadLettered = f.counterVec("events_dead_lettered_total", "Events Fluentd rejected for good and written to the dead-letter file, by stream.", "stream")
	m.EventsSkipped = f.counterVec("events_skipped_total", "Events not sent, by stream and reason (type: --skip-event-types or --skip-session-types).", "stream", "reason")
	m.SendsInFlight = f.gauge("sends_in_flight", "Sends to Fluentd (HTTP POSTs or forward messages) in progress, retries waiting included.")
	m.PoolCapacity = f.gauge("fluentd_connections", "Connection actors in the Fluentd pool (--fluentd-max-connections).")
	m.SendDuration = f.histogram("send_duration_seconds", "Time of one send to Fluentd (an HTTP POST or a forward message and its ack), failures included.", prometheus.ExponentialBuckets(0.001, 2.5, 12))
	m.BatchEvents = f.histogram("fluentd_batch_events", "Events in one send to Fluentd, an HTTP POST or a forward message (1 unless --fluentd-batch is above 1).", []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000})
	m.FetchToAck = f.histogramVec("fetch_to_ack_seconds", "Time from reading an event from Teleport to Fluentd's 2xx for it, by stream.", prometheus.ExponentialBuckets(0.00025, 1.5, 32), "stream")
	m.FluentdResponses = f.counterVec("fluentd_responses_total", "Answers from Fluentd by status class (2xx, 3xx, 4xx, 5xx; over forward ack or refused; error for no answer).", "class")
	m.CheckpointWrites = f.counterVec("checkpoint_writes_total", "Transactions written to the state file, by result (ok, error; unwritable: a save that can never be written, failed and dropped).", "result")
	m.CheckpointDuration = f.histogram("checkpoint_write_duration_seconds", "Time of one fsync'd checkpoint transaction.", prometheus.ExponentialBuckets(0.0005, 2.5, 12))
	m.AckedEventTime = f.gauge("acked_event_timestamp_seconds", "Time of the newest audit event whose position is checkpointed (Unix seconds).")
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "lag_seconds",
		Help: "Age of the oldest audit event not yet confirmed by Fluentd; 0 when caught up, on a quiet cluster too.",
	}, m.lag))

	m.SessionsActive = f.gauge("sessions_active", "Session recordings being streamed.")
	m.SessionsQueued = f.gauge("sessions_queued", "Session recordings registered and waiting (the in-memory slice of the backlog).")
	m.SessionsFinished = f.counter("sessions_finished_total", "Session recordings streamed completely.")
	m.SessionsGivenUp = f.counterVec("sessions_given_up_total", "Session recordings given up, by reason (not_found, failing, invalid_id).", "reason")
	f.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "dead_letter_file_bytes",
		Help: "Size of dead-letters.jsonl, bounded by --dead-letter-max-mb."}, func() float64 {
		if size := m.deadLetterSize.Load(); size != nil {
			return float64((*size)())
		}
		return 0
	}))
	m.ExportChunksParked = f.gauge("export_chunks_parked", "Export chunks that kept failing and wait to be read again (their events are not delivered yet).")

	m.LocksCreated = f.counter("locks_created_total", "Locks upserted in Teleport for users who failed to log in too often.")
	m.LockFailuresIgnored = f.counterVec("lock_failures_ignored_total", "Failed logins the lock policy could not count, by reason (user_name_too_long: over 1024 bytes, no account's; unwritable: its state could not be stored).", "reason")
	m.LocksCapped = f.counter("locks_capped_total", "Locks not written because --lock-max-per-period were decided within --lock-period (a mass lock-out).")
	m.BuildInfo = f.gaugeVec("build_info", "Always 1: the daemon's version and the Go version it was built with.", "version", "goversion")
	m.OutputInfo = f.gaugeVec("output_info", "Always 1: the protocol each stream (audit, session) is sent with: http, forward, syslog or relp.", "stream", "protocol")
	m.SyslogResent = f.counter("syslog_resent_total", "Syslog messages written again on a new syslog+tls:// connection because the one they were written to broke before they were known received (the receiver may hold them twice).")
	m.IdentityExpiresAt = f.gauge("identity_expires_at_seconds", "When the Teleport identity in use expires (Unix seconds); renew it before (tbot, or tctl auth sign and --teleport-refresh-enabled).")
	m.IdentityReloads = f.counterVec("identity_reloads_total", "Reloads of the Teleport identity file, by result (ok, error).", "result")
	f.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "fluentd_certificate_issued_at_seconds",
		Help: "When the client certificate for Fluentd was issued (Unix seconds, its NotBefore), as --fluentd-cert holds it now."},
		m.fluentdValidityGauge(func(issued, _ time.Time) time.Time { return issued })))
	f.r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "fluentd_certificate_expires_at_seconds",
		Help: "When the client certificate for Fluentd expires (Unix seconds), as --fluentd-cert holds it now; renew it and --fluentd-key before."},
		m.fluentdValidityGauge(func(_, expires time.Time) time.Time { return expires })))
	m.FluentdCertificateReloads = f.counterVec("fluentd_certificate_reloads_total",
		"Changes of the --fluentd-ca, --fluentd-cert and --fluentd-key files seen by a new connection, by result (ok; error: they do not load and the previous ones stay in use).", "result")
	m.TeleportErrors = f.counterVec("teleport_errors_total", "Failed Teleport API calls, by method and error kind.", "method", "code")
	m.TeleportSearches = f.counterVec("teleport_searches_total", "Audit log searches, by cursor (live; trail: the late events' trailing cursor, --late-event-lag).", "cursor")
	m.AuditLateEvents = f.counter("audit_late_events_total", "Audit events the trailing cursor found that search showed after later ones (--late-event-lag).")

	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetAcked records the time of the newest checkpointed audit event.
func (m *Metrics) SetAcked(t time.Time) {
	m.AckedEventTime.Set(float64(t.Unix()))
	m.ackedUnix.Store(t.UnixNano())
}

// SetPending records the time of the oldest audit event not yet confirmed
// (read or not), zero when the reader is caught up: lag_seconds is its age,
// so that a quiet, fully delivered cluster has none.
func (m *Metrics) SetPending(t time.Time) {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	m.pendingUnix.Store(ns)
	m.reported.Store(true)
}

// caughtUp reports whether the audit reader has nothing left to confirm.
func (m *Metrics) caughtUp() bool { return m.reported.Load() && m.pendingUnix.Load() == 0 }

func (m *Metrics) lag() float64 {
	ns := m.pendingUnix.Load()
	if ns == 0 {
		return 0
	}
	return max(time.Since(time.Unix(0, ns)).Seconds(), 0)
}

// StatusClass is the "class" label of a Fluentd answer; 0 means no answer.
func StatusClass(status int) string {
	switch {
	case status >= 200 && status < 600:
		return string("0123456789"[status/100]) + "xx"
	default:
		return "error"
	}
}

// CountDecision counts one decision of the supervisor about a failed
// actor of kind: a restart (by the kind of failure: a panic with an error,
// a runtime error or another value) or, when it gave up, a stop.
func (m *Metrics) CountDecision(kind string, gaveUp bool, cause any) {
	if gaveUp {
		m.SupervisorDecisions.WithLabelValues(kind, "stop").Inc()
		return
	}
	m.SupervisorDecisions.WithLabelValues(kind, "restart").Inc()
	m.ActorRestarts.WithLabelValues(kind, reasonClass(cause)).Inc()
}

func reasonClass(reason any) string {
	var rerr runtime.Error
	switch r := reason.(type) {
	case error:
		if errors.As(r, &rerr) {
			return "runtime"
		}
		return "error"
	default:
		return "panic"
	}
}

type factory struct{ r *prometheus.Registry }

// register registers c with the factory's registry and returns it.
func register[C prometheus.Collector](f factory, c C) C {
	f.r.MustRegister(c)
	return c
}

func opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: namespace, Name: name, Help: help}
}

func (f factory) counter(name, help string) prometheus.Counter {
	return register(f, prometheus.NewCounter(prometheus.CounterOpts(opts(name, help))))
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return register(f, prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), labels))
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	return register(f, prometheus.NewGauge(prometheus.GaugeOpts(opts(name, help))))
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return register(f, prometheus.NewGaugeVec(prometheus.GaugeOpts(opts(name, help)), labels))
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	return register(f, prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}))
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return register(f, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels))
}

// ErrorKind is the "code" label of a failed Teleport call.
func ErrorKind(err error) string {
	switch {
	case trace.IsNotFound(err):
		return "not_found"
	case trace.IsAccessDenied(err):
		return "access_denied"
	case trace.IsConnectionProblem(err):
		return "connection_problem"
	case trace.IsLimitExceeded(err):
		return "limit_exceeded"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline_exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case trace.IsBadParameter(err):
		return "bad_parameter"
	default:
		return "other"
	}
}

// Output is where a stream's events go, and over what protocol.
type Output struct {
	Stream, URL, Protocol string
}

// SetOutputs records the outputs of the streams, for output_info and
// the status report.
func (m *Metrics) SetOutputs(outs []Output) {
	for _, o := range outs {
		m.OutputInfo.WithLabelValues(o.Stream, o.Protocol).Set(1)
	}
	m.outputs.Store(&outs)
}

// Outputs are what SetOutputs recorded.
func (m *Metrics) Outputs() []Output {
	if p := m.outputs.Load(); p != nil {
		return *p
	}
	return nil
}
