package e2e

import (
	"path/filepath"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// exportWindow bounds the events a crash on the export path sends again:
// up to --concurrency chunk readers (the test server has 3 chunks a day),
// each with max(40 / 5, --batch 20) events in flight.
const exportWindow = 3 * 20

func TestExportAndSearchDeliverTheSameEvents(t *testing.T) {
	e := parallelEnv(t)
	e.Teleport.SetExport(true)
	evs := e.Seed(800, 21)
	skipped := map[string]bool{}
	for _, ev := range evs {
		if ev.GetType() == "exec" {
			skipped[ev.GetID()] = true
		}
	}
	require.NotEmpty(t, skipped)

	base := e.Storage
	e.Storage = filepath.Join(base, "search")
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--export-mode", "search", "--skip-event-types", "exec")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	bySearch := e.Fluentd.CountByUID()
	require.Zero(t, e.Teleport.Calls("ExportUnstructuredEvents"))
	// Pages grow through the backlog: in pages of 20 the 800 events took
	// 43 searches (the live cursor's, the trailing one's, the seeding's),
	// growing ones take 10.
	require.Less(t, e.Teleport.Calls("GetUnstructuredEvents"), 20)

	e.Storage = filepath.Join(base, "export")
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--skip-event-types", "exec")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Contains(t, p.Output(), "reading the audit log with the export API")
	require.Positive(t, e.Teleport.Calls("ExportUnstructuredEvents"))
	all := e.Fluentd.CountByUID()

	// The same events arrive by both paths, each exactly once.
	dups, total := 0, 0
	for _, ev := range evs {
		id := ev.GetID()
		total += all[id]
		if skipped[id] {
			require.Zero(t, all[id], "skipped event %s sent", id)
			continue
		}
		byExport := all[id] - bySearch[id]
		require.Positive(t, bySearch[id], "search lost event %s", id)
		require.Positive(t, byExport, "export lost event %s", id)
		dups += bySearch[id] - 1 + byExport - 1
	}
	require.Zero(t, dups)
	require.Equal(t, total, e.Audit(), "nothing else arrived")
	// Recordings are played from the export path's session.upload events too.
	e.SessionsDelivered(map[string]bool{"print": true, "desktop.recording": true})
}

func TestExportKillNineLosesNothing(t *testing.T) {
	e := parallelEnv(t)
	e.Teleport.SetExport(true)
	evs := e.Seed(3000, 22)
	e.Fluentd.SetLatency(10 * time.Millisecond) // stretch the run so kills land mid-export
	kills := killAtRandom(t, e, []string{"--exit-on-last-event"}, 5, 700, 800)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute), harness.Tail(p.Output(), 20))
	require.Contains(t, p.Output(), "reading the audit log with the export API")
	require.Positive(t, kills)
	dups := harness.Delivered(t, e.Fluentd, evs, nil)
	t.Logf("%d kills, %d duplicates (bound %d)", kills, dups, kills*exportWindow)
	require.LessOrEqual(t, dups, kills*exportWindow)
}

func TestServerWithoutExportAPIFallsBackToSearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // the test server's export API is off by default
	evs := e.Seed(300, 23)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Contains(t, p.Output(), "Teleport has no export API")
	require.LessOrEqual(t, harness.Delivered(t, e.Fluentd, evs, nil), window)
	require.Equal(t, 1, e.Teleport.Calls("GetEventExportChunks"), "probed once")
	require.Zero(t, e.Teleport.Calls("ExportUnstructuredEvents"))

	// Forcing the export path on such a server is refused at start, not
	// retried for ever.
	e.Storage = filepath.Join(t.TempDir(), "forced")
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--export-mode", "export")...)
	require.NotEqual(t, 0, p.Wait(t, 30*time.Second), harness.Tail(p.Output(), 20))
	require.Contains(t, p.Output(), "--export-mode export: Teleport at "+e.Teleport.Addr()+" has no export API")
	require.Contains(t, p.Output(), "use --export-mode auto or search")
	require.Zero(t, e.Teleport.Calls("ExportUnstructuredEvents"))
}

func TestSwitchingModesSendsNothingAgain(t *testing.T) {
	e := parallelEnv(t)
	e.Teleport.SetExport(true)
	evs := e.Seed(300, 24) // 5 minutes from an hour ago: older than the seed margin
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--export-mode", "export")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.LessOrEqual(t, harness.Delivered(t, e.Fluentd, evs, nil), exportWindow)
	after := e.Audit()

	// Export to search: search starts where the export had caught up.
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--export-mode", "search")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Contains(t, p.Output(), "search resumes at the day the export path was reading")
	require.Equal(t, after, e.Audit(), "search sent events the export had sent")

	// New events, read by search; then back to export: nothing again.
	var more []apievents.AuditEvent
	for _, ev := range teleportsrv.GenerateAuditEvents(50, time.Now().Add(-30*time.Second), 100*time.Millisecond, 25) {
		if ev.GetType() != "session.upload" { // no recordings behind these
			more = append(more, ev)
		}
	}
	require.NoError(t, e.Teleport.AddEvents(more...))
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--export-mode", "search")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Zero(t, harness.Delivered(t, e.Fluentd, more, nil))
	after = e.Audit()
	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--export-mode", "export")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), harness.Tail(p.Output(), 20))
	require.Equal(t, after, e.Audit(), "export sent events search had sent")
}
