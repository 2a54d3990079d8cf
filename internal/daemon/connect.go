package daemon

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/sessions"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventsyslog"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/forward"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/jsonhttp"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/syslog"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// connectTeleport connects to Teleport and pings it, and reloads the
// identity file every --teleport-refresh-interval when asked to. With
// opts.Teleport (tests) it uses that instead.
// It returns the cluster's name too ("" with opts.Teleport).
func connectTeleport(ctx context.Context, cfg *config.Config, opts Options, m *metrics.Metrics, log zerolog.Logger) (API, string, func(), error) {
	if opts.Teleport != nil {
		return opts.Teleport, "", func() {}, nil
	}
	t := cfg.Teleport
	conn, err := waitForTeleport(ctx, teleport.Config{Addr: t.Addr, Identity: t.Identity, CA: t.CA, Cert: t.Cert, Key: t.Key, Reload: t.RefreshEnabled}, log)
	if err != nil {
		return nil, "", nil, err
	}
	log.Info().Str("addr", t.Addr).Str("cluster", conn.Ping.ClusterName).Str("version", conn.Ping.ServerVersion).Msg("connected to teleport")
	expiry := func() {
		if exp, ok := conn.Expiry(); ok {
			m.IdentityExpiresAt.Set(float64(exp.Unix()))
		}
	}
	expiry()
	var refresh *supervisor.Task
	if t.RefreshEnabled {
		refresh = supervisor.Go(ctx, func(ctx context.Context) {
			conn.RunRefresh(ctx, t.RefreshInterval, log, func(err error) {
				result := "ok"
				if err != nil {
					result = "error"
				}
				m.IdentityReloads.WithLabelValues(result).Inc()
				expiry()
			})
		})
	}
	return conn, conn.Ping.ClusterName, func() { refresh.Stop(); conn.Close() }, nil
}

// teleportRetries is the wait between attempts to reach Teleport at start.
var teleportRetries = backoff.Policy{Initial: time.Second, Max: 30 * time.Second, Jitter: true}

// dialTeleport is teleport.Connect; a test stands in for it.
var dialTeleport = teleport.Connect

// waitForTeleport connects to Teleport, waiting with backoff while it is
// unreachable (as for Fluentd: a Teleport down at boot must not leave the
// unit failed), with an error line per attempt; certificate and permission
// problems are fatal at once. A stop while waiting is errStopped.
func waitForTeleport(ctx context.Context, cfg teleport.Config, log zerolog.Logger) (*teleport.Conn, error) {
	for attempt := 1; ; attempt++ {
		conn, err := dialTeleport(ctx, cfg)
		if err != nil && ctx.Err() != nil {
			// A stop wins over what the attempt met meanwhile, as it
			// does for Fluentd: the daemon was asked to stop.
			return nil, errStopped
		}
		var ce *teleport.ConnectError
		if err == nil || !errors.As(err, &ce) || ce.Kind != teleport.Unreachable {
			if err == nil && attempt > 1 {
				log.Info().Str("addr", cfg.Addr).Msg("teleport is reachable")
			}
			return conn, err
		}
		delay := teleportRetries.Delay(attempt)
		// The cause alone: the client's own text nests every attempt.
		log.Error().Str("addr", cfg.Addr).Str("fix", ce.Fix).Str("error", ce.Cause()).Dur("retry_in", delay).
			Msg("teleport is unreachable; waiting for it")
		select {
		case <-ctx.Done():
			return nil, errStopped
		case <-time.After(delay):
		}
	}
}

// Transports are the transports to Fluentd of cfg, one per URL scheme, for
// the dead-letters replay.
func Transports(cfg *config.Config) (wire.Schemes, error) {
	f := cfg.Fluentd
	creds, err := wire.LoadCredentials(f.CA, f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	t := transports(cfg, creds, zerolog.Nop(), nil)
	// Letters keep the URL they were sent to, which may be of any scheme.
	t[forward.Scheme] = forwardTransport(cfg, creds)
	t[syslog.TLSScheme] = syslog.NewTLS(creds, syslogOptions(cfg, zerolog.Nop(), nil))
	t[syslog.RELPScheme] = syslog.NewRELP(creds, syslogOptions(cfg, zerolog.Nop(), nil))
	return t, nil
}

func forwardTransport(cfg *config.Config, creds *wire.Credentials) *forward.Transport {
	f := cfg.Fluentd
	host, _ := os.Hostname()
	return forward.New(creds, forward.Options{SharedKey: []byte(f.SharedKey), SharedKeyFile: f.SharedKeyFile,
		Gzip: f.Compress == "gzip", Hostname: host, MaxMessage: f.MaxMessageKB << 10})
}

// transports are the transports of the Fluentd URLs' schemes: HTTP for
// syslogOptions are the syslog transports' options of cfg; resent
// messages are logged and counted (m may be nil).
func syslogOptions(cfg *config.Config, log zerolog.Logger, m *metrics.Metrics) syslog.Options {
	return syslog.Options{MaxMessage: cfg.Fluentd.SyslogMaxMessageKB << 10, Software: "teleport-event-handler",
		OnResend: func(addr string, n int) {
			if m != nil {
				m.SyslogResent.Add(float64(n))
			}
			log.Warn().Str("addr", addr).Int("events", n).
				Msg("a syslog+tls connection broke: the messages not known received were sent again on a new one (the receiver may log them twice)")
		}}
}

// encodeFor is how the events sent to url are encoded: for Fluentd's
// in_forward, as its entries, straight from Teleport's Struct
// (eventmsgpack); for a syslog receiver, as RFC 5424 messages
// (eventsyslog), with the cluster's name for events that lack one, and
// recording sid's session (sid is "" for the audit log); for in_http, as
// JSON.
func encodeFor(cfg *config.Config, url, cluster, sid string) inflight.Encode {
	switch {
	case strings.HasPrefix(url, forward.Scheme+"://"):
		return eventmsgpack.Entry
	case config.IsSyslog(url):
		return eventsyslog.Encoder{Facility: cfg.Fluentd.Facility, Cluster: cluster, Session: sid}.Message
	}
	return eventjson.Event
}

// https://, the forward protocol for forward://.
func transports(cfg *config.Config, creds *wire.Credentials, log zerolog.Logger, m *metrics.Metrics) wire.Schemes {
	f := cfg.Fluentd
	t := wire.Schemes{"https": jsonhttp.New(creds, f.MaxConnections)}
	if f.UsesForward() {
		t[forward.Scheme] = forwardTransport(cfg, creds)
	}
	if f.UsesSyslog() {
		t[syslog.TLSScheme] = syslog.NewTLS(creds, syslogOptions(cfg, log, m))
		t[syslog.RELPScheme] = syslog.NewRELP(creds, syslogOptions(cfg, log, m))
	}
	return t
}

// connectFluentd sets up the transport to Fluentd and waits until the
// handshake with each endpoint works: a certificate problem is fatal, an
// unreachable Fluentd is waited for. With --dry-run, which sends nothing,
// there is no transport.
func connectFluentd(ctx context.Context, cfg *config.Config, m *metrics.Metrics, log zerolog.Logger) (wire.Transport, error) {
	if cfg.DryRun {
		return nil, nil
	}
	f := cfg.Fluentd
	creds, err := wire.LoadCredentials(f.CA, f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	m.WatchFluentdCertificate(creds.Validity)
	creds.OnReload = func(err error) {
		if err != nil {
			m.FluentdCertificateReloads.WithLabelValues("error").Inc()
			log.Error().Err(err).Msg("fluentd certificate files changed but do not load; new connections keep the previous ones")
			return
		}
		m.FluentdCertificateReloads.WithLabelValues("ok").Inc()
		log.Info().Msg("fluentd certificate files changed; new connections use them")
	}
	t := transports(cfg, creds, log, m)
	warnUnacknowledged(f, log)
	checked := map[string]bool{}
	for _, u := range []string{f.URL, f.SessionURL} {
		// The handshake depends on the endpoint only, and both URLs
		// usually name the same one.
		if pu, err := url.Parse(u); err == nil {
			if checked[pu.Scheme+pu.Host] {
				continue
			}
			checked[pu.Scheme+pu.Host] = true
		}
		m.Health.Starting("waiting for Fluentd at " + u)
		if err := wire.WaitReady(ctx, t, u, log); err != nil {
			t.Close()
			if ctx.Err() != nil {
				return nil, errStopped
			}
			return nil, err
		}
	}
	return t, nil
}

// warnUnacknowledged says at start, for each syslog+tls:// URL, what plain
// syslog cannot promise.
func warnUnacknowledged(f config.FluentdConfig, log zerolog.Logger) {
	for _, u := range []string{f.URL, f.SessionURL} {
		if strings.HasPrefix(u, syslog.TLSScheme+"://") {
			log.Warn().Str("url", u).Msg("syslog over TLS has no acknowledgements: a message written to a connection that then breaks " +
				"can be lost (the messages written in the last moments before a break are sent again, so a receiver may also log some twice); " +
				"use relp+tls:// when nothing may be lost")
		}
	}
}

// LetterBody is what a dead letter is sent again as: its JSON, or, for a
// syslog URL, the message eventsyslog makes of that JSON (a recording's
// naming its session, from the letter's URL): deadletters.Body.
func LetterBody(cfg *config.Config) func(persistence.DeadLetter) ([]byte, error) {
	return func(l persistence.DeadLetter) ([]byte, error) {
		if !config.IsSyslog(l.URL) {
			return l.Event, nil
		}
		e := eventsyslog.Encoder{Facility: cfg.Fluentd.Facility}
		if l.Stream == metrics.Session {
			e.Session = sessions.SessionOf(l.URL)
		}
		return e.FromJSON(l.Event, l.EventID)
	}
}
