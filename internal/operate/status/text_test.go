package status

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A daemon still starting says so, and what it waits for, rather than
// running or stopped.
func TestTextSaysWhatAStartingDaemonWaitsFor(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		r    Report
		want string
	}{
		{Report{StateFile: "/s/state.db"}, "daemon        stopped (state /s/state.db)\n"},
		{Report{StateFile: "/s/state.db", Running: true}, "daemon        running (state /s/state.db)\n"},
		{Report{StateFile: "/s/state.db", Running: true, Starting: "waiting for Fluentd at https://fluentd:8888/teleport.log"},
			"daemon        starting: waiting for Fluentd at https://fluentd:8888/teleport.log (state /s/state.db)\n"},
	} {
		var out bytes.Buffer
		c.r.Text(&out, now)
		first, _, _ := bytes.Cut(out.Bytes(), []byte("\n"))
		require.Equal(t, c.want, string(first)+"\n")
	}
}
