// Package logging sets up zerolog: human-readable on a terminal, JSON
// otherwise, and bridges protoactor's slog logger into it.
package logging

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// New returns the daemon's logger writing to w, in format: "text"
// (human-readable), "json" (one object a line), or "auto" (or empty): text
// on a terminal, JSON otherwise. Debug lowers the level from info to debug.
// Event bodies, keys and certificates are never logged at info level or
// above.
//
// Both formats are for an operator to read: a duration says its unit
// (retry_in=9.79s, a Go duration string; zerolog's default is a bare number
// of milliseconds), and a field with nothing in it (last_id=) is left out.
func New(w io.Writer, format string, debug bool) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
	out := w
	if format == "text" || (format != "json" && isTerminal(w)) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !isTerminal(w)}
	}
	level := zerolog.InfoLevel
	if debug {
		level = zerolog.DebugLevel
	}
	return zerolog.New(omitEmpty{out}).Level(level).With().Timestamp().Logger()
}

// omitEmpty leaves the fields whose value is the empty string out of the
// lines zerolog writes through it, one JSON object a Write, before the
// console writer formats them: in one place, rather than a condition at
// each of the fields that may be empty.
type omitEmpty struct{ w io.Writer }

func (o omitEmpty) Write(p []byte) (int, error) {
	if _, err := o.w.Write(withoutEmpty(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// emptyField is a field whose value is "", with the comma that separates it
// from the one before, or else from the one after (the first of an
// object). In zerolog's JSON a raw quote only opens or closes a key or a
// string (a quote inside one is escaped), and only a key's closing quote is
// followed by a colon: the pattern cannot match inside a value.
var emptyField = regexp.MustCompile(`,"[^"\\]*":""|"[^"\\]*":"",?`)

// withoutEmpty is the JSON line p without its empty fields.
func withoutEmpty(p []byte) []byte {
	if !bytes.Contains(p, []byte(`:""`)) {
		return p
	}
	return emptyField.ReplaceAll(p, nil)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// ActorLogger gives protoactor a slog logger that writes through zerolog.
// protoactor logs routine lifecycle noise at info; keep only its warnings
// unless debugging.
func ActorLogger(log zerolog.Logger, debug bool) actor.ConfigOption {
	l := log.With().Str("component", "protoactor").Logger()
	if !debug {
		l = l.Level(zerolog.WarnLevel)
	}
	return actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(zerolog.NewSlogHandler(l))
	})
}
