package daemon

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/config"
)

func TestPlanSizesWindowsAndFilters(t *testing.T) {
	none := map[string]bool{}
	for _, tc := range []struct {
		name string
		cfg  func(*config.Config)
		want Plan
	}{{
		name: "defaults: 10 connections, 1 event per POST, 5 players",
		want: Plan{Capacity: 10, AuditWindow: 256, ChunkWindow: 51, PlayerWindow: 32,
			Audit:    inflight.Filter{Only: none, Skip: none},
			Sessions: inflight.Filter{Skip: map[string]bool{"print": true, "desktop.recording": true}}},
	}, {
		name: "batches of 20 over 10 connections",
		cfg:  func(c *config.Config) { c.Fluentd.Batch = 20 },
		want: Plan{Capacity: 200, AuditWindow: 800, ChunkWindow: 160, PlayerWindow: 160},
	}, {
		name: "a page bigger than the window",
		cfg:  func(c *config.Config) { c.Batch = 1000 },
		want: Plan{Capacity: 10, AuditWindow: 1000, ChunkWindow: 1000, PlayerWindow: 32},
	}, {
		name: "one connection, one player",
		cfg:  func(c *config.Config) { c.Fluentd.MaxConnections, c.Concurrency = 1, 1 },
		want: Plan{Capacity: 1, AuditWindow: 256, ChunkWindow: 256, PlayerWindow: 32},
	}, {
		name: "--types with locking: failed logins are fetched but not sent",
		cfg: func(c *config.Config) {
			c.Types, c.SkipEventTypes, c.Lock.Enabled = []string{"exec", "session.upload"}, []string{"exec"}, true
		},
		want: Plan{Capacity: 10, AuditWindow: 256, ChunkWindow: 51, PlayerWindow: 32, Audit: inflight.Filter{
			Only: map[string]bool{"exec": true, "session.upload": true, "user.login": true},
			Skip: map[string]bool{"exec": true, "user.login": true}}},
	}, {
		name: "--types that has the logins already",
		cfg:  func(c *config.Config) { c.Types, c.Lock.Enabled = []string{"user.login"}, true },
		want: Plan{Capacity: 10, AuditWindow: 256, ChunkWindow: 51, PlayerWindow: 32, Audit: inflight.Filter{
			Only: map[string]bool{"user.login": true}, Skip: none}},
	}, {
		name: "every type: locking adds nothing",
		cfg:  func(c *config.Config) { c.Lock.Enabled = true },
		want: Plan{Capacity: 10, AuditWindow: 256, ChunkWindow: 51, PlayerWindow: 32, Audit: inflight.Filter{Only: none, Skip: none}},
	}, {
		name: "no session types skipped",
		cfg:  func(c *config.Config) { c.SkipSessionTypes = nil },
		want: Plan{Capacity: 10, AuditWindow: 256, ChunkWindow: 51, PlayerWindow: 32, Sessions: inflight.Filter{Skip: none}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Fluentd.MaxConnections = 2 * cfg.Concurrency // as config resolves it
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			got := planFor(&cfg)
			want := tc.want
			// Filters left out of a case are the defaults'.
			if want.Audit.Only == nil {
				want.Audit = inflight.Filter{Only: none, Skip: none}
			}
			if want.Sessions.Skip == nil {
				want.Sessions = inflight.Filter{Skip: set(cfg.SkipSessionTypes)}
			}
			require.Equal(t, want, got)
		})
	}
}
