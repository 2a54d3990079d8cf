package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// statusOf runs the status command with start's arguments and returns its
// output; --json is decoded into r when given.
func statusOf(t *testing.T, e *env, json bool, r *status.Report) string {
	t.Helper()
	args := append([]string{"status"}, e.Args()[1:]...)
	if json {
		args = append(args, "--json")
	}
	out, err := exec.Command(binary, args...).CombinedOutput()
	require.NoError(t, err, string(out))
	if r != nil {
		require.NoError(t, jsonUnmarshalString(string(out), r), string(out))
	}
	return string(out)
}

func jsonUnmarshalString(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// status answers for a stopped daemon from its files and for a running one
// through its control socket, without disturbing it.
func TestStatusOfAStoppedAndARunningDaemon(t *testing.T) {
	e, evs := seededEnv(t, 300, 51)
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == evs[7].GetID() })
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 3, p.Wait(t, time.Minute), p.Output())

	var r status.Report
	statusOf(t, e, true, &r)
	require.False(t, r.Running)
	require.Equal(t, status.ReportFormat, r.Format)
	require.Equal(t, "search", r.ReadPath)
	require.Equal(t, e.T0.Add(-time.Minute).UTC(), r.StartTime.UTC())
	require.NotNil(t, r.Audit)
	require.Equal(t, evs[len(evs)-1].GetID(), r.Audit.LastID)
	require.Equal(t, uint64(len(evs)), r.Audit.Settled)
	require.Equal(t, 1, r.DeadLetters.Count)
	require.Equal(t, map[string]int{"400": 1}, r.DeadLetters.ByStatus)
	text := statusOf(t, e, false, nil)
	t.Log("\n" + text)
	for _, want := range []string{"daemon        stopped", "read path     search", "dead letters  1 in", "400=1"} {
		require.Contains(t, text, want)
	}

	// Running: the state file is locked; the daemon answers and goes on.
	p = harness.Run(t, binary, nil, e.Args()...)
	harness.WaitFor(t, 30*time.Second, "the daemon serves its control socket", func() bool {
		var r status.Report
		args := append([]string{"status", "--json"}, e.Args()[1:]...)
		out, err := exec.Command(binary, args...).Output()
		return err == nil && json.Unmarshal(out, &r) == nil && r.Running
	})
	statusOf(t, e, true, &r)
	require.True(t, r.Running)
	require.Equal(t, status.ReportFormat, r.Format, "the running daemon's report too")
	require.NotNil(t, r.Recordings.Active)
	more := teleportGenerate(20, time.Now().Add(-time.Second), 52)
	require.NoError(t, e.Teleport.AddEvents(more...))
	harness.WaitFor(t, 30*time.Second, "new events delivered after status", func() bool {
		return harness.TallyAudit(e.Fluentd, more, nil).Lost == 0
	})
	require.True(t, strings.Contains(statusOf(t, e, false, nil), "daemon        running"))
	p.Signal(syscall.SIGTERM)
	require.Equal(t, 0, p.Wait(t, 30*time.Second), p.Output())
}
