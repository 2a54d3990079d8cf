package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

func repairCmd(t *testing.T, e *env, args ...string) (string, int) {
	t.Helper()
	full := append(append([]string{}, args...), e.Args()[1:]...)
	out, err := exec.Command(binary, full...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	require.NoError(t, err)
	return string(out), 0
}

// A recording the daemon gave up is kept: listed, queued again by retry
// (and then streamed in full), or dropped for good.
func TestGivenUpRecordingsCanBeRetriedOrDropped(t *testing.T) {
	e := parallelEnv(t)
	e.Seed(20, 81)
	late, gone := harness.SID("late"), harness.SID("gone")
	e.AddSession("late", 12, e.T0.Add(30*time.Second))
	e.AddSession("gone", 5, e.T0.Add(40*time.Second))
	e.Teleport.SetRecordingAvailableAfter(late, 1<<30)
	e.Teleport.SetRecordingAvailableAfter(gone, 1<<30)
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 3, p.Wait(t, 2*time.Minute), p.Output())

	out, code := repairCmd(t, e, "sessions", "list")
	t.Log("\n" + out)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, late+"  given up (not_found)")
	require.Contains(t, out, gone)
	out, _ = repairCmd(t, e, "sessions", "retry")
	require.Contains(t, out, "--all", "nothing named: the command says how")

	e.Teleport.SetRecordingAvailableAfter(late, 0)
	out, code = repairCmd(t, e, "sessions", "retry", late)
	t.Log("\n" + out)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "queued again")
	out, code = repairCmd(t, e, "sessions", "drop", gone)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "dropped for good")

	p = harness.Run(t, binary, nil, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, 2*time.Minute), p.Output())
	want := 0
	for _, ev := range e.Recordings[late] {
		if !defaultSkip[ev.GetType()] {
			want++
		}
	}
	require.Positive(t, want)
	require.Len(t, recorded(e, late), want, "streamed in full (the skipped print events aside)")
	require.Empty(t, recorded(e, gone), "dropped: not streamed")
	out, _ = repairCmd(t, e, "sessions", "list")
	require.Empty(t, strings.TrimSpace(out))
	out, _ = repairCmd(t, e, "status")
	require.Contains(t, out, "0 given up")
}
