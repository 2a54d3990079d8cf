package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// line logs one line through New in format and returns it.
func line(t *testing.T, format string, log func(zerolog.Logger)) string {
	t.Helper()
	var buf bytes.Buffer
	log(New(&buf, format, false))
	out := strings.TrimSpace(buf.String())
	require.Equal(t, 1, strings.Count(out, "\n")+1, "one line: %s", out)
	return out
}

// A duration says its unit, in both formats: retry_in=9.79s, not
// zerolog's default of a bare number of milliseconds (retry_in=9785.731839).
func TestDurationsCarryTheirUnit(t *testing.T) {
	log := func(l zerolog.Logger) {
		l.Info().Dur("retry_in", 9790*time.Millisecond).Dur("took", 1500*time.Microsecond).Msg("waiting")
	}
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(line(t, "json", log)), &fields))
	require.Equal(t, "9.79s", fields["retry_in"])
	require.Equal(t, "1.5ms", fields["took"])
	text := line(t, "text", log)
	require.Contains(t, text, "retry_in=9.79s")
	require.Contains(t, text, "took=1.5ms")
}

// A field with nothing in it is left out of the line, in both formats,
// wherever it is (first, last, in a context, in a nested object); a value
// that merely looks like an empty field is kept as it is.
func TestEmptyFieldsAreLeftOut(t *testing.T) {
	const tricky = `a,"k":"",b` // a value, not a field
	log := func(l zerolog.Logger) {
		l = l.With().Str("component", "").Logger()
		l.Info().Str("export_mode", "").Str("addr", "teleport:3025").
			Dict("d", zerolog.Dict().Str("e", "").Str("f", "g").Str("h", "")).
			Str("quote", tricky).Str("last_id", "").Msg("reading")
	}
	raw := line(t, "json", log)
	var fields map[string]any
	require.NoError(t, json.Unmarshal([]byte(raw), &fields), raw)
	for _, k := range []string{"component", "export_mode", "last_id"} {
		require.NotContains(t, fields, k, raw)
	}
	require.Equal(t, "teleport:3025", fields["addr"])
	require.Equal(t, map[string]any{"f": "g"}, fields["d"])
	require.Equal(t, tricky, fields["quote"])
	require.Equal(t, "reading", fields["message"])

	text := line(t, "text", log)
	for _, k := range []string{"component=", "export_mode=", "last_id="} {
		require.NotContains(t, text, k)
	}
	require.Contains(t, text, "addr=teleport:3025")
}

// Only a whole empty object is dropped as such; other values stay.
func TestDroppingKeepsOtherLinesAsTheyAre(t *testing.T) {
	for _, in := range []string{
		`{"level":"info","n":0,"b":false,"s":"x","message":"m"}` + "\n",
		`{"level":"info","a":["",""],"message":"m"}` + "\n",
		`{"level":"info","e":"\"\"","message":"m"}` + "\n",
	} {
		require.Equal(t, in, string(withoutEmpty([]byte(in))))
	}
	require.Equal(t, `{"level":"info"}`+"\n", string(withoutEmpty([]byte(`{"level":"info","x":""}`+"\n"))))
	require.Equal(t, `{"level":"info"}`+"\n", string(withoutEmpty([]byte(`{"x":"","level":"info"}`+"\n"))))
	require.Equal(t, `{}`, string(withoutEmpty([]byte(`{"x":""}`))))
}
