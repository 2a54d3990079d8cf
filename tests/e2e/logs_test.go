package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// Every log line is one JSON object without a duplicate key at any level
// (log pipelines keep one of two "time" keys): in a dry run, which logs
// each event with its time, and in a run with a rejected event.
func TestLogLinesAreValidJSONWithoutDuplicateKeys(t *testing.T) {
	e, evs := seededEnv(t, 60, 51)
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == evs[7].GetID() })
	dry := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--dry-run", "--debug")...)
	require.Equal(t, 0, dry.Wait(t, time.Minute), dry.Output())
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--debug")...)
	require.Equal(t, 3, p.Wait(t, time.Minute), p.Output())
	lines := 0
	for _, out := range []string{dry.Output(), p.Output()} {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			lines++
			require.NoError(t, uniqueKeys(json.NewDecoder(strings.NewReader(line))), "line %q", line)
		}
	}
	require.Greater(t, lines, 60, "the dry run logs every event")
}

// uniqueKeys reads one JSON value from d and fails on a key that an object
// holds twice.
func uniqueKeys(d *json.Decoder) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch delim {
	case '{':
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("key %q twice", key)
			}
			seen[key] = true
			if err := uniqueKeys(d); err != nil {
				return err
			}
		}
	case '[':
		for d.More() {
			if err := uniqueKeys(d); err != nil {
				return err
			}
		}
	}
	_, err = d.Token() // the closing delimiter
	if err == io.EOF {
		return nil
	}
	return err
}

// --log-format text writes the readable lines even to a pipe, json JSON even
// on a terminal (not testable here), auto JSON to a pipe.
func TestLogFormatText(t *testing.T) {
	e := parallelEnv(t)
	e.Seed(20, 61)
	p := harness.Run(t, binary, []string{"FDFWD_LOG_FORMAT=text"}, e.Args("--exit-on-last-event")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	for _, line := range strings.Split(strings.TrimSpace(p.Output()), "\n") {
		require.False(t, strings.HasPrefix(line, "{"), "a JSON line: %s", line)
	}
	require.Contains(t, p.Output(), "INF")
	require.Regexp(t, `delivered=[0-9]+`, p.Output())
	require.NotContains(t, p.Output(), "\x1b[", "no colours off a terminal")
}

// A debug run logs no event content: no event body, not in a dead letter's
// log line, not in protoactor's own debug lines.
func TestDebugLogsCarryNoEventContent(t *testing.T) {
	e, evs := seededEnv(t, 200, 63)
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == evs[9].GetID() })
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--debug")...)
	require.Equal(t, 3, p.Wait(t, time.Minute), p.Output())
	out := p.Output()
	require.Contains(t, out, `"level":"debug"`, "a debug run")
	for _, content := range []string{`cluster_name`, `addr.remote`, `"ei"`, `\"ei\"`} {
		require.NotContains(t, out, content, "event content in the log")
	}
}
