package daemon

import (
	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/lockpolicy"
	"github.com/fdfwd/teleport-event-handler/actors/sessions"
	"github.com/fdfwd/teleport-event-handler/config"
)

// Plan is what the configuration means for the actors: how many events each
// reader keeps in flight, and which events are fetched and sent. planFor
// computes it from the configuration alone.
type Plan struct {
	// Capacity is how many events the pool carries at once: connections x
	// events per request.
	Capacity int
	// AuditWindow is the most audit events the search poller hands out and
	// has not checkpointed: enough to keep every connection busy while
	// checkpoints are written, and at least a page.
	AuditWindow int
	// ChunkWindow is each export chunk reader's share of it, and at least a
	// page.
	ChunkWindow int
	// PlayerWindow is each session player's share of four times the
	// capacity, and at least sessions.DefaultWindow.
	PlayerWindow int
	// Audit says which audit events are fetched (Types) and sent; the taps
	// see every fetched event. Sessions says which session events are sent.
	Audit, Sessions inflight.Filter
}

// MinWindow is the least AuditWindow: events wait for a checkpoint
// transaction (at most every checkpoint.DefaultInterval) after Fluentd's
// answer, and the window must cover that wait at the rates a single Fluentd
// takes (about 10k events/s) or the stream stalls on it.
const MinWindow = 256

// planFor is the plan of cfg.
func planFor(cfg *config.Config) Plan {
	capacity := max(cfg.Fluentd.MaxConnections, 1) * max(cfg.Fluentd.Batch, 1)
	audit := max(4*capacity, cfg.Batch, MinWindow)
	readers := max(cfg.Concurrency, 1)
	return Plan{
		Capacity:     capacity,
		AuditWindow:  audit,
		ChunkWindow:  max(audit/readers, cfg.Batch),
		PlayerWindow: max(sessions.DefaultWindow, 4*capacity/readers),
		Audit:        auditFilter(cfg),
		Sessions:     inflight.Filter{Skip: set(cfg.SkipSessionTypes)},
	}
}

// auditFilter is --types and --skip-event-types. The lock policy needs
// failed logins even when --types leaves them out: they are fetched, but
// not sent.
func auditFilter(cfg *config.Config) inflight.Filter {
	f := inflight.Filter{Only: set(cfg.Types), Skip: set(cfg.SkipEventTypes)}
	if cfg.Lock.Enabled && len(f.Only) > 0 && !f.Only[lockpolicy.LoginEvent] {
		f.Only[lockpolicy.LoginEvent], f.Skip[lockpolicy.LoginEvent] = true, true
	}
	return f
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}
