package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPlanBuildsTheBacklogItSays(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, first := range []bool{false, true} {
		p := plan{Audit: 5000, Recordings: 100, Sessions: 2501, Start: start, Step: time.Second, Seed: 3, UploadsFirst: first}
		audit, recs := p.build()
		require.Len(t, audit, 5000)
		require.Len(t, recs, 100)
		uploads, events := 0, 0
		for i, ev := range audit {
			if ev.GetType() == "session.upload" {
				require.Equal(t, recs[uploads].Index, i)
				uploads++
			}
			if i > 0 {
				require.False(t, ev.GetTime().Before(audit[i-1].GetTime()), "out of order")
			}
		}
		for _, r := range recs {
			events += r.Events
		}
		require.Equal(t, 100, uploads)
		require.Equal(t, 2501, events)
		a, s := totals(audit, recs, start)
		require.Equal(t, 5000, a)
		require.Equal(t, 2501, s)
		if first {
			require.Less(t, recs[99].Index, 2000, "the uploads should come first")
		} else {
			// Spread: some in the last tenth of the backlog.
			require.Greater(t, recs[99].Index, 4500)
			a, s = totals(audit, recs, audit[4000].GetTime())
			require.Equal(t, 1000, a)
			require.Positive(t, s)
		}
	}
}

// The profiled daemon resolves the command line the bench writes for the
// binary: start, --flag VALUE, --flag=VALUE and switches alone.
func TestStartFlagsOfTheBenchsCommandLine(t *testing.T) {
	got, err := startFlags([]string{"start", "--storage", "/s", "--skip-session-types", "", "--exit-on-last-event", "--batch=7"})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"storage": "/s", "skip-session-types": "", "exit-on-last-event": "true", "batch": "7"}, got)
	for _, bad := range [][]string{{"start", "--nope"}, {"start", "--storage"}, {"start", "stray"}} {
		_, err := startFlags(bad)
		require.Error(t, err, bad)
	}
}
