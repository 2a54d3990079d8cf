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

// A running daemon names each stream's receiver and protocol; a stopped
// one, which does not know them, prints no such line.
func TestTextNamesTheOutputs(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Report{StateFile: "/s/state.db", Running: true, Outputs: []Output{
		{Stream: "audit", URL: "relp+tls://siem:2514", Protocol: "relp"},
		{Stream: "session", URL: "https://fluentd:8888/session", Protocol: "http"},
	}}
	var out bytes.Buffer
	r.Text(&out, now)
	require.Contains(t, out.String(), "outputs       audit over relp to relp+tls://siem:2514\n              session over http to https://fluentd:8888/session\n")
	out.Reset()
	Report{StateFile: "/s/state.db"}.Text(&out, now)
	require.NotContains(t, out.String(), "outputs")
}
