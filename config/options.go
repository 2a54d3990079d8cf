package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// option is one setting and every way to give it. The table below is the only
// list of options: the command line, the help, the environment and the file
// keys are all derived from it.
type option struct {
	flag   string   // long flag name, without the dashes
	lead   string   // a neutral name the help leads with (--receiver-url for --fluentd-url); both work
	short  rune     // short flag, 0 for none
	global bool     // accepted before the command, like -c and -d upstream
	group  string   // section of the help
	env    []string // environment variables, the first one set wins
	keys   []string // TOML key paths, dotted
	value  string   // placeholder shown in the help, e.g. PATH
	help   string
	// def overrides the default shown in the help, when the zero value of the
	// field means something else (0 connections is "2 x --concurrency").
	def string
	// field points into the Config the option sets; its type decides how the
	// text is parsed. Nil for --config, which is resolved first and apart.
	field func(*Config) any
	// secret: the value never appears in messages, and is refused on the
	// command line, where the process list and shell history would show it.
	secret bool
	// retired, for an option of the original plugin that this daemon no
	// longer needs, checks its value and returns the warning to log, or the
	// problem and fix of a value it cannot honour. Retired options are in
	// neither the help nor the README.
	retired func(text string) (warning, problem, fix string)
}

const (
	groupTeleport = "Teleport connection"
	groupFluentd  = "Receiver connection (Fluentd or syslog)"
	groupEvents   = "Event processing"
	groupRun      = "Operation"
	groupLock     = "User auto-locking"
)

// groups of the start command, in help order.
var groups = []string{groupTeleport, groupFluentd, groupEvents, groupRun, groupLock}

// options in help order. Environment variable names and file keys are those
// of the upstream plugin, including its misspelled FDWRD_ variables, so that
// existing deployments keep working.
var options = []*option{
	{flag: "config", short: 'c', global: true, env: []string{"FDFWD_CONFIG"}, value: "FILE",
		help: "TOML configuration file"},
	{flag: "debug", short: 'd', global: true, env: []string{"FDFWD_DEBUG"}, keys: []string{"debug"},
		help:  "Log at debug level",
		field: func(c *Config) any { return &c.Debug }},

	{flag: "teleport-addr", group: groupTeleport, env: []string{"FDFWD_TELEPORT_ADDR"}, keys: []string{"teleport.addr"}, value: "HOST:PORT",
		help:  "Teleport Auth Service or Proxy Service address",
		field: func(c *Config) any { return &c.Teleport.Addr }},
	{flag: "teleport-ca", group: groupTeleport, env: []string{"FDFWD_TELEPORT_CA"}, keys: []string{"teleport.ca"}, value: "PATH",
		help:  "Teleport TLS CA certificate file",
		field: func(c *Config) any { return &c.Teleport.CA }},
	{flag: "teleport-cert", group: groupTeleport, env: []string{"FDFWD_TELEPORT_CERT", "FDWRD_TELEPORT_CERT"}, keys: []string{"teleport.cert"}, value: "PATH",
		help:  "Teleport TLS certificate file",
		field: func(c *Config) any { return &c.Teleport.Cert }},
	{flag: "teleport-key", group: groupTeleport, env: []string{"FDFWD_TELEPORT_KEY"}, keys: []string{"teleport.key"}, value: "PATH",
		help:  "Teleport TLS private key file",
		field: func(c *Config) any { return &c.Teleport.Key }},
	{flag: "teleport-identity", group: groupTeleport, env: []string{"FDFWD_TELEPORT_IDENTITY"}, keys: []string{"teleport.identity"}, value: "PATH",
		help:  "Teleport identity file, instead of a certificate, key and CA",
		field: func(c *Config) any { return &c.Teleport.Identity }},
	{flag: "teleport-refresh-enabled", group: groupTeleport, env: []string{"FDFWD_TELEPORT_REFRESH_ENABLED"}, keys: []string{"teleport.refresh.enabled"},
		help:  "Reload the identity file periodically",
		field: func(c *Config) any { return &c.Teleport.RefreshEnabled }},
	{flag: "teleport-refresh-interval", group: groupTeleport, env: []string{"FDFWD_TELEPORT_REFRESH_INTERVAL"}, keys: []string{"teleport.refresh.interval"}, value: "DURATION",
		help:  "How often to reload the identity file",
		field: func(c *Config) any { return &c.Teleport.RefreshInterval }},

	{flag: "fluentd-url", lead: "receiver-url", group: groupFluentd, env: []string{"FDFWD_RECEIVER_URL", "FDFWD_FLUENTD_URL"}, keys: []string{"receiver.url", "forward.fluentd.url"}, value: "URL",
		help:  "Audit event URL (https, forward, syslog+tls or relp+tls; required)",
		field: func(c *Config) any { return &c.Fluentd.URL }},
	{flag: "fluentd-session-url", lead: "receiver-session-url", group: groupFluentd, env: []string{"FDFWD_RECEIVER_SESSION_URL", "FDFWD_FLUENTD_SESSION_URL"}, keys: []string{"receiver.session-url", "forward.fluentd.session-url"}, value: "URL",
		help:  "Base URL for session recordings; .<session-id>.log is appended (required)",
		field: func(c *Config) any { return &c.Fluentd.SessionURL }},
	{flag: "fluentd-ca", lead: "receiver-ca", group: groupFluentd, env: []string{"FDFWD_RECEIVER_CA", "FDFWD_FLUENTD_CA", "FDWRD_FLUENTD_CA"}, keys: []string{"receiver.ca", "forward.fluentd.ca"}, value: "PATH",
		help:  "CA certificate file of the receiver's server (required unless --dry-run)",
		field: func(c *Config) any { return &c.Fluentd.CA }},
	{flag: "fluentd-cert", lead: "receiver-cert", group: groupFluentd, env: []string{"FDFWD_RECEIVER_CERT", "FDFWD_FLUENTD_CERT", "FDWRD_FLUENTD_CERT"}, keys: []string{"receiver.cert", "forward.fluentd.cert"}, value: "PATH",
		help:  "Client certificate file for the receiver (required unless --dry-run)",
		field: func(c *Config) any { return &c.Fluentd.Cert }},
	{flag: "fluentd-key", lead: "receiver-key", group: groupFluentd, env: []string{"FDFWD_RECEIVER_KEY", "FDFWD_FLUENTD_KEY", "FDWRD_FLUENTD_KEY"}, keys: []string{"receiver.key", "forward.fluentd.key"}, value: "PATH",
		help:  "Client private key file for the receiver (required unless --dry-run)",
		field: func(c *Config) any { return &c.Fluentd.Key }},
	{flag: "fluentd-max-connections", group: groupFluentd, env: []string{"FDFWD_MAX_CONNECTIONS", "FDWRD_MAX_CONNECTIONS"}, keys: []string{"forward.fluentd.max-connections"}, value: "N",
		help: "Maximum concurrent connections to the receiver", def: "2 x --concurrency",
		field: func(c *Config) any { return &c.Fluentd.MaxConnections }},
	{flag: "fluentd-batch", group: groupFluentd, env: []string{"FDFWD_FLUENTD_BATCH"}, keys: []string{"forward.fluentd.batch"}, value: "N",
		help: "Events per POST (a JSON array), forward message or syslog window", def: "1; 100 with forward:// and syslog",
		field: func(c *Config) any { return &c.Fluentd.Batch }},
	{flag: "fluentd-shared-key", group: groupFluentd, env: []string{"FDFWD_FLUENTD_SHARED_KEY"}, keys: []string{"forward.fluentd.shared-key"}, value: "KEY",
		help: "forward:// only: in_forward's <security> shared_key; env or TOML only", secret: true,
		field: func(c *Config) any { return &c.Fluentd.SharedKey }},
	{flag: "fluentd-shared-key-file", group: groupFluentd, env: []string{"FDFWD_FLUENTD_SHARED_KEY_FILE"}, keys: []string{"forward.fluentd.shared-key-file"}, value: "PATH",
		help:  "forward:// only: file holding the shared key",
		field: func(c *Config) any { return &c.Fluentd.SharedKeyFile }},
	{flag: "fluentd-max-message-kb", group: groupFluentd, env: []string{"FDFWD_FLUENTD_MAX_MESSAGE_KB"}, keys: []string{"forward.fluentd.max-message-kb"}, value: "KIB",
		help:  "forward:// only: the most one message may take (chunk_size_limit)",
		field: func(c *Config) any { return &c.Fluentd.MaxMessageKB }},
	{flag: "syslog-facility", group: groupFluentd, env: []string{"FDFWD_SYSLOG_FACILITY"}, keys: []string{"forward.syslog.facility"}, value: "NAME|N",
		help: "syslog URLs only: the messages' facility", def: "logaudit (13)",
		field: func(c *Config) any { return &c.Fluentd.SyslogFacility }},
	{flag: "syslog-max-message-kb", group: groupFluentd, env: []string{"FDFWD_SYSLOG_MAX_MESSAGE_KB"}, keys: []string{"forward.syslog.max-message-kb"}, value: "KIB",
		help:  "syslog URLs only: the receiver's limit; a larger event is a dead letter",
		field: func(c *Config) any { return &c.Fluentd.SyslogMaxMessageKB }},
	{flag: "fluentd-compress", group: groupFluentd, env: []string{"FDFWD_FLUENTD_COMPRESS"}, keys: []string{"forward.fluentd.compress"}, value: "none|gzip",
		help: "forward:// only: gzip sends CompressedPackedForward", def: "none",
		field: func(c *Config) any { return &c.Fluentd.Compress }},

	{flag: "batch", group: groupEvents, env: []string{"FDFWD_BATCH"}, keys: []string{"batch"}, value: "N",
		help:  "Events fetched per search request (Teleport allows at most 10000)",
		def:   "20, doubling up to 1000 while a backlog is read",
		field: func(c *Config) any { return &c.Batch }},
	{flag: "timeout", group: groupEvents, env: []string{"FDFWD_TIMEOUT"}, keys: []string{"timeout"}, value: "DURATION",
		help:  "Pause between polls once all events are read",
		field: func(c *Config) any { return &c.Timeout }},
	{flag: "types", group: groupEvents, env: []string{"FDFWD_TYPES"}, keys: []string{"types"}, value: "LIST",
		help: "Comma-separated event types to forward, exact names, no wildcards", def: "all",
		field: func(c *Config) any { return &c.Types }},
	{flag: "skip-session-types", group: groupEvents, env: []string{"FDFWD_SKIP_SESSION_TYPES"}, keys: []string{"skip-session-types"}, value: "LIST",
		help:  "Comma-separated session event types to skip; '' skips none",
		field: func(c *Config) any { return &c.SkipSessionTypes }},
	{flag: "skip-event-types", group: groupEvents, env: []string{"FDFWD_SKIP_EVENT_TYPES"}, keys: []string{"skip-event-types"}, value: "LIST",
		help:  "Comma-separated audit event types to skip",
		field: func(c *Config) any { return &c.SkipEventTypes }},
	{flag: "start-time", group: groupEvents, env: []string{"FDFWD_START_TIME"}, keys: []string{"start-time"}, value: "RFC3339",
		help:  "Oldest event to export on the first run, e.g. 2024-01-02T15:04:05Z",
		field: func(c *Config) any { return &c.StartTime }},
	{flag: "concurrency", group: groupEvents, env: []string{"FDFWD_CONCURRENCY"}, keys: []string{"concurrency"}, value: "N",
		help:  "Session recordings streamed at once",
		field: func(c *Config) any { return &c.Concurrency }},
	{flag: "export-mode", group: groupEvents, env: []string{"FDFWD_EXPORT_MODE"}, keys: []string{"export-mode"}, value: "MODE",
		help: "Audit log API: auto (export if available), export (required) or search", def: "auto",
		field: func(c *Config) any { return &c.ExportMode }},
	{flag: "window-size", group: groupEvents, env: []string{"FDFWD_WINDOW_SIZE"}, keys: []string{"window-size"}, value: "DURATION",
		help:  "Span of audit log searched per query",
		field: func(c *Config) any { return &c.WindowSize }},
	{flag: "late-event-lag", group: groupEvents, env: []string{"FDFWD_LATE_EVENT_LAG"}, keys: []string{"late-event-lag"}, value: "DURATION",
		help:  "Search path: deliver events search shows this late; 0 turns it off",
		field: func(c *Config) any { return &c.LateEventLag }},
	{flag: "storage", group: groupEvents, env: []string{"FDFWD_STORAGE"}, keys: []string{"storage"}, value: "DIR",
		help:  "Directory of the persisted progress; relative to the working directory",
		def:   "$STATE_DIRECTORY (set by systemd and the image), else required",
		field: func(c *Config) any { return &c.Storage }},

	{flag: "dry-run", group: groupRun, env: []string{"FDFWD_DRY_RUN"}, keys: []string{"dry-run"},
		help:  "Read events without sending them",
		field: func(c *Config) any { return &c.DryRun }},
	{flag: "exit-on-last-event", group: groupRun, env: []string{"FDFWD_EXIT_ON_LAST_EVENT"}, keys: []string{"exit-on-last-event"},
		help:  "Exit once the last event is processed",
		field: func(c *Config) any { return &c.ExitOnLastEvent }},
	{flag: "log-format", group: groupRun, env: []string{"FDFWD_LOG_FORMAT"}, keys: []string{"log-format"}, value: "auto|text|json",
		help:  "Log lines: auto is text on a terminal and JSON otherwise",
		field: func(c *Config) any { return &c.LogFormat }},
	{flag: "metrics-addr", group: groupRun, env: []string{"FDFWD_METRICS_ADDR"}, keys: []string{"metrics-addr"}, value: "HOST:PORT",
		help:  "Serve /metrics, /healthz, /readyz here, e.g. 127.0.0.1:9465",
		field: func(c *Config) any { return &c.MetricsAddr }},
	{flag: "web-config-file", group: groupRun, env: []string{"FDFWD_WEB_CONFIG_FILE"}, keys: []string{"web-config-file"}, value: "PATH",
		help:  "Secure --metrics-addr with TLS, client certs, basic auth",
		field: func(c *Config) any { return &c.WebConfigFile }},
	{flag: "health-addr", group: groupRun, env: []string{"FDFWD_HEALTH_ADDR"}, keys: []string{"health-addr"}, value: "HOST:PORT",
		help:  "Also serve /healthz and /readyz here, without the web config",
		field: func(c *Config) any { return &c.HealthAddr }},
	{flag: "dead-letter-max-mb", group: groupRun, env: []string{"FDFWD_DEAD_LETTER_MAX_MB"}, keys: []string{"dead-letter-max-mb"}, value: "MIB",
		help:  "Bound of dead-letters.jsonl; at it, rejected events wait",
		field: func(c *Config) any { return &c.DeadLetterMaxMB }},
	{flag: "ready-grace", group: groupRun, env: []string{"FDFWD_READY_GRACE"}, keys: []string{"ready-grace"}, value: "DURATION",
		help:  "Grace for failing sends or Teleport calls before /readyz is red",
		field: func(c *Config) any { return &c.ReadyGrace }},

	{flag: "lock-enabled", group: groupLock, env: []string{"FDFWD_LOCKING_ENABLED"}, keys: []string{"lock-enabled", "lock.enabled"},
		help:  "Lock users after repeated failed logins",
		field: func(c *Config) any { return &c.Lock.Enabled }},
	{flag: "lock-failed-attempts-count", group: groupLock, env: []string{"FDFWD_LOCKING_FAILED_ATTEMPTS"}, keys: []string{"lock-failed-attempts-count", "lock.failed-attempts-count"}, value: "N",
		help:  "Failed logins within --lock-period that lock a user",
		field: func(c *Config) any { return &c.Lock.FailedAttempts }},
	{flag: "lock-period", group: groupLock, env: []string{"FDFWD_LOCKING_PERIOD"}, keys: []string{"lock-period", "lock.period"}, value: "DURATION",
		help:  "Window in which failed logins are counted",
		field: func(c *Config) any { return &c.Lock.Period }},
	{flag: "lock-for", group: groupLock, env: []string{"FDFWD_LOCKING_FOR"}, keys: []string{"lock-for", "lock.for"}, value: "DURATION",
		help: "How long a lock lasts", def: "0, never expires",
		field: func(c *Config) any { return &c.Lock.For }},
	{flag: "lock-exempt-users", group: groupLock, env: []string{"FDFWD_LOCK_EXEMPT_USERS"}, keys: []string{"lock-exempt-users", "lock.exempt-users"}, value: "LIST",
		help:  "Users never locked (break-glass admins, bots)",
		field: func(c *Config) any { return &c.Lock.ExemptUsers }},
	{flag: "lock-max-per-period", group: groupLock, env: []string{"FDFWD_LOCK_MAX_PER_PERIOD"}, keys: []string{"lock-max-per-period", "lock.max-per-period"}, value: "N",
		help:  "Most new locks per --lock-period; beyond, log and alert (0: no cap)",
		field: func(c *Config) any { return &c.Lock.MaxLocks }},

	// The original plugin's retired options, still found in its
	// configurations (see retired.go).
	{flag: "namespace", env: []string{"FDFWD_NAMESPACE"}, keys: []string{"namespace"}, value: "NAME",
		help: "Retired: the audit log's namespace, always default", retired: retiredNamespace,
		field: func(c *Config) any { return &c.retired.namespace }},
	{flag: "teleport-debug", env: []string{"FDFWD_TELEPORT_DEBUG"}, keys: []string{"teleport.debug"},
		help: "Retired: --debug", retired: retiredTeleportDebug,
		field: func(c *Config) any { return &c.retired.teleportDebug }},
}

// optionByFlag returns the option with the long name flag; the names are
// constants of this package, so a miss is a bug.
func optionByFlag(flag string) *option {
	for _, o := range options {
		if o.flag == flag {
			return o
		}
	}
	panic("config: no option --" + flag)
}

// isSwitch reports whether the option is a boolean flag, given without value.
func (o *option) isSwitch() bool {
	if o.field == nil {
		return false
	}
	_, ok := o.field(&Config{}).(*bool)
	return ok
}

// defaultText is the default as the help shows it, "" when there is none.
func (o *option) defaultText() string {
	if o.def != "" || o.field == nil {
		return o.def
	}
	def := Default()
	switch v := o.field(&def).(type) {
	case *string:
		return *v
	case *int:
		if *v != 0 {
			return strconv.Itoa(*v)
		}
	case *time.Duration:
		if *v != 0 {
			return formatDuration(*v)
		}
	case *[]string:
		return strings.Join(*v, ",")
	}
	return ""
}

// set parses text the way the field's type wants it and stores it in c. The
// returned problem and fix are phrased for an *Error.
func (o *option) set(c *Config, text string) (problem, fix string) {
	switch v := o.field(c).(type) {
	case *string:
		*v = text
	case *bool:
		b, ok := parseBool(text)
		if !ok {
			return "not a boolean", "use true or false"
		}
		*v = b
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(text))
		if err != nil {
			fix := "use a whole number"
			if def := Default(); *o.field(&def).(*int) != 0 {
				fix += " such as " + strconv.Itoa(*o.field(&def).(*int))
			}
			return "not a whole number", fix
		}
		*v = n
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(text))
		if err != nil {
			return err.Error(), "use a Go duration such as 5s or 1m"
		}
		*v = d
	case *[]string:
		*v = splitList(text)
	case *time.Time:
		t, err := time.Parse(time.RFC3339, strings.TrimSpace(text))
		if err != nil {
			return "not an RFC 3339 time", "use the form 2024-01-02T15:04:05Z, or 2024-01-02T15:04:05+01:00 with an offset"
		}
		*v = t
	default:
		panic("config: unsupported field type for --" + o.flag)
	}
	return "", ""
}

// parseBool accepts the spellings people put in environment files: those of
// the original plugin (kong's: true, 1, yes, false, 0, no, in any case),
// and those of Go's strconv.ParseBool (t, f) and of systemd (y, n, on, off).
func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "t", "1", "yes", "y", "on":
		return true, true
	case "false", "f", "0", "no", "n", "off":
		return false, true
	}
	return false, false
}

// splitList splits a comma-separated list, dropping blanks: "" is an empty
// list, which for --skip-session-types means skip nothing.
func splitList(s string) []string {
	list := []string{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			list = append(list, item)
		}
	}
	return list
}

// formatDuration drops the zero units time.Duration.String appends: 24h, not
// 24h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (o *option) writeHelp(b *strings.Builder) {
	b.WriteString("  ")
	switch {
	case o.secret:
		// Refused as a flag (see secretOnCommandLine): offer only what works.
		fmt.Fprintf(b, "%s=%s (not a flag: a secret)", o.env[0], o.value)
	default:
		if o.short != 0 {
			fmt.Fprintf(b, "-%c, ", o.short)
		}
		name := o.flag
		if o.lead != "" {
			name = o.lead
		}
		b.WriteString("--" + name)
		if o.value != "" {
			b.WriteString("=" + o.value)
		}
		if o.lead != "" {
			b.WriteString(" (or --" + o.flag + ")")
		}
	}
	b.WriteString("\n      " + o.help + ".\n")

	// Default, variables and keys share lines as far as 80 columns allow.
	var notes []string
	if def := o.defaultText(); def != "" {
		notes = append(notes, "Default: "+def+".")
	}
	notes = append(notes, "Env: "+strings.Join(o.env, " or ")+".")
	if len(o.keys) > 0 {
		notes = append(notes, "File: "+strings.Join(o.keys, " or ")+".")
	}
	line := "     "
	for _, note := range notes {
		if len(line)+1+len(note) > 80 && strings.TrimSpace(line) != "" {
			b.WriteString(line + "\n")
			line = "     "
		}
		line += " " + note
	}
	b.WriteString(line + "\n")
}
