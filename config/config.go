// Package config resolves the daemon's settings from the command line's
// flags (parsed by the program, handed over as text), the environment and a
// TOML file, the way Teleport's Event Handler plugin does, and validates
// them before anything starts.
//
// Each option is looked up in that order and the first place that sets it
// wins: flag > environment > file > default. The options themselves are
// listed once, in options.go.
package config

import (
	"strings"
	"time"
)

// Config is everything the daemon needs to run. Default returns its defaults;
// Resolve returns it resolved and validated.
type Config struct {
	// Storage is the directory of the persisted progress (--storage),
	// absolute: a relative one is taken from the working directory. Its
	// default is $STATE_DIRECTORY; without one it is required.
	Storage string
	// Timeout is how long to sleep between polls once the poller has caught up
	// with the audit log. Upstream calls it a timeout; it is a poll interval.
	Timeout time.Duration
	// Batch is the number of events fetched per search request: the first
	// page's, when GrowBatch.
	Batch int
	// GrowBatch: a search page grows from Batch up to GrowBatchTo while pages
	// come back with more to read (a backlog), and falls back to Batch at
	// the live edge. The default; Resolve turns it off when --batch is set
	// anywhere, to keep the user's page size.
	GrowBatch bool
	// Types lists the event types to forward; empty forwards all of them.
	Types []string
	// SkipEventTypes lists the event types never forwarded.
	SkipEventTypes []string
	// SkipSessionTypes lists the session recording event types never
	// forwarded. Print events and desktop recordings are skipped by default
	// because they carry raw terminal output and screen frames; an explicit
	// empty value forwards everything.
	SkipSessionTypes []string
	// StartTime is the oldest event to export on the first run; zero means
	// the whole audit log. It is stored with the progress, and a later run may
	// not change it.
	StartTime time.Time
	// WindowSize is the span of audit log searched per query.
	WindowSize time.Duration
	// LateEventLag is how long after its time an audit event that search
	// shows late (after later ones) is still delivered, by a trailing
	// cursor that reads each span again once it is this old; 0 turns it
	// off. Search path only: the export API has no such gap.
	LateEventLag time.Duration
	// Concurrency bounds the session recordings streamed at once, and the
	// chunks read at once on the export path.
	Concurrency int
	// ExportMode picks how the audit log is read: ExportAuto (also the
	// empty string) probes Teleport's export API and uses it when the server
	// has it, ExportExport requires the export API (the start fails without
	// it), ExportSearch uses the search API without asking.
	ExportMode string
	// DryRun reads events but sends nothing and keeps no lasting progress.
	DryRun bool
	// ExitOnLastEvent stops the daemon once it has caught up.
	ExitOnLastEvent bool
	// Debug turns on debug logging.
	Debug bool
	// LogFormat is "auto" (human-readable on a terminal, JSON otherwise),
	// "text" or "json".
	LogFormat string
	// MetricsAddr is where /metrics, /healthz and /readyz are served; empty
	// serves nothing.
	MetricsAddr string
	// WebConfigFile secures MetricsAddr the way Prometheus exporters are
	// (exporter-toolkit's web configuration: TLS, client certificates, basic
	// auth); HealthAddr then serves /healthz and /readyz apart, unsecured,
	// for probes.
	WebConfigFile string
	HealthAddr    string
	// ReadyGrace is how long Fluentd may fail every send, a Teleport reader
	// every call, or a checkpoint stay unwritten, before /readyz says the
	// daemon is not ready: a short outage is ridden out without paging
	// anyone. A receiver that refuses service (401, 403, a redirect, ...)
	// makes it unready at once.
	ReadyGrace time.Duration
	// DeadLetterMaxMB bounds dead-letters.jsonl, in MiB. At the bound no
	// letter is lost: the rejected event waits, /readyz is red, until an
	// operator deals with the file.
	DeadLetterMaxMB int

	Fluentd  FluentdConfig
	Teleport TeleportConfig
	Lock     LockConfig

	// retired holds what the original plugin's retired options were set
	// to, for their warnings (see retired.go).
	retired retiredSettings
}

// FluentdConfig says where events go. Fluentd is reached over mTLS only.
type FluentdConfig struct {
	// URL receives the audit events.
	URL string
	// SessionURL is the base URL of session recordings: events of session
	// <sid> are posted to <SessionURL>.<sid>.log.
	SessionURL string
	// CA, Cert and Key are PEM files: the CA that signed Fluentd's server
	// certificate, and our client certificate and its key.
	CA, Cert, Key string
	// MaxConnections caps the concurrent connections to Fluentd. Zero in the
	// input means twice Concurrency; Resolve always resolves it to that.
	MaxConnections int
	// Batch is the most events sent in one POST, as a JSON array (Fluentd's
	// in_http makes one record of each element), or in one forward message.
	// 1, the default over HTTP, sends each event on its own, as upstream
	// does; with a forward:// URL the default is DefaultForwardBatch.
	Batch int
	// SharedKey answers in_forward's <security> handshake; read from
	// SharedKeyFile when that is set. Never logged.
	SharedKey     string
	SharedKeyFile string
	// Compress is "gzip" for CompressedPackedForward messages, "" or
	// "none" for PackedForward.
	Compress string
	// MaxMessageKB is the most KiB one forward message may take on the
	// wire: in_forward drops a message over its chunk_size_limit without
	// an answer, so a batch is sent in smaller messages, and an event
	// larger than this alone is dead-lettered. The default is Fluentd's
	// default buffer chunk (chunk_limit_size 8MB), which a message must
	// fit in to be stored.
	MaxMessageKB int
	// SyslogFacility is the facility of syslog messages, a name
	// ("logaudit", "authpriv", "local0", ...) or its number; Facility is
	// its number once resolved.
	SyslogFacility string
	Facility       int
	// SyslogMaxMessageKB is the most KiB one syslog message may take: the
	// receiver's limit (rsyslog's maxMessageSize, 8k by default), past
	// which it would cut the message. A larger event is a dead letter.
	SyslogMaxMessageKB int
}

// DefaultForwardBatch is --fluentd-batch when a Fluentd URL uses the
// forward protocol and the option is not given: there is no drop-in
// behaviour to keep, and one message of many events is what in_forward is
// made for.
const DefaultForwardBatch = 100

// Syslog schemes: RFC 5424 over TLS, and RELP over TLS.
const (
	SyslogTLSScheme  = "syslog+tls"
	SyslogRELPScheme = "relp+tls"
)

// Schemes are the URL schemes a receiver URL may have.
var Schemes = []string{"https", "forward", SyslogTLSScheme, SyslogRELPScheme}

// IsSyslog reports whether url sends to a syslog receiver.
func IsSyslog(url string) bool {
	return strings.HasPrefix(url, SyslogTLSScheme+"://") || strings.HasPrefix(url, SyslogRELPScheme+"://")
}

// Protocol names the protocol a URL sends with, for metrics and status:
// http (Fluentd's in_http), forward (its in_forward), syslog (RFC 5424
// over TLS) or relp.
func Protocol(url string) string {
	switch scheme, _, _ := strings.Cut(url, "://"); scheme {
	case "https":
		return "http"
	case SyslogTLSScheme:
		return "syslog"
	case SyslogRELPScheme:
		return "relp"
	default:
		return scheme
	}
}

// UsesSyslog reports whether either URL sends to a syslog receiver.
func (f FluentdConfig) UsesSyslog() bool { return IsSyslog(f.URL) || IsSyslog(f.SessionURL) }

// UsesForward reports whether either Fluentd URL uses the forward protocol.
func (f FluentdConfig) UsesForward() bool {
	return strings.HasPrefix(f.URL, "forward://") || strings.HasPrefix(f.SessionURL, "forward://")
}

// TeleportConfig says how to reach the Teleport Auth or Proxy Service. It
// takes either an identity file or a certificate, key and CA, never both.
type TeleportConfig struct {
	// Addr is host:port of the Auth Service or the Proxy Service.
	Addr string
	// Identity is an identity file as written by `tctl auth sign`.
	Identity string
	// CA, Cert and Key are PEM files used instead of an identity file.
	CA, Cert, Key string
	// RefreshEnabled reloads the identity file every RefreshInterval, so that
	// short-lived credentials renewed on disk (by tbot, say) are picked up.
	RefreshEnabled  bool
	RefreshInterval time.Duration
}

// LockConfig drives the auto-locking of users that fail to log in too often.
type LockConfig struct {
	Enabled bool
	// FailedAttempts within Period lock the user.
	FailedAttempts int
	Period         time.Duration
	// For is how long the lock lasts; zero means it never expires.
	For time.Duration
	// ExemptUsers are never locked.
	ExemptUsers []string
	// MaxLocks caps the new locks within Period: beyond it the daemon logs
	// and alerts instead of locking. Zero: no cap.
	MaxLocks int
}

// MaxForwardMessageKB bounds --fluentd-max-message-kb (1 GiB): a message is
// built in memory.
const MaxForwardMessageKB = 1 << 20

// MaxSyslogMessageKB bounds --syslog-max-message-kb (64 MiB): far past any
// receiver's limit, and what the in-flight window may hold of each event.
const MaxSyslogMessageKB = 64 << 10

// MaxBatch bounds --batch: Teleport's audit log refuses a larger search
// limit (its EventsMaxIterationLimit), and ends a page at 1 MiB of events
// whatever the limit.
const MaxBatch = 10000

// GrowBatchTo is the most a search page grows to without --batch. Past a
// few hundred events a round trip costs little beside the page's events,
// while a page's events are held until they are handed out: with a
// 1,000,000-event backlog, growing to 1000 read it 27% faster than pages
// of 20 for 15 MB more peak memory, where growing to Teleport's 10000 (cut
// at 1 MiB, some 2,300 events here) was no faster and took 87 MB more
// (make bench-memory, docs/performance.md).
const GrowBatchTo = 1000

// MaxFluentdBatch bounds --fluentd-batch: the events held in memory grow
// with it (see the daemon's Plan).
const MaxFluentdBatch = 1000

// Export modes (--export-mode).
const (
	ExportAuto   = "auto"
	ExportExport = "export"
	ExportSearch = "search"
)

// Default returns the defaults of Teleport's Event Handler plugin.
func Default() Config {
	return Config{
		Timeout:          5 * time.Second,
		LogFormat:        "auto",
		Batch:            20,
		GrowBatch:        true,
		SkipSessionTypes: []string{"print", "desktop.recording"},
		WindowSize:       24 * time.Hour,
		LateEventLag:     5 * time.Minute,
		Concurrency:      5,
		ReadyGrace:       time.Minute,
		DeadLetterMaxMB:  256,
		Fluentd:          FluentdConfig{Batch: 1, MaxMessageKB: 8192, SyslogFacility: "logaudit", SyslogMaxMessageKB: 8},
		Teleport: TeleportConfig{
			Addr:            "localhost:3025",
			RefreshInterval: time.Minute,
		},
		Lock: LockConfig{
			FailedAttempts: 3,
			Period:         time.Minute,
			// Not the original's (it has no cap): a safeguard against
			// locking many users out; 0 removes it.
			MaxLocks: 10,
		},
	}
}
