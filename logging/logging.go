// Package logging sets up zerolog: human-readable on a terminal, JSON
// otherwise, and bridges protoactor's slog logger into it.
package logging

import (
	"io"
	"log/slog"
	"os"
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
func New(w io.Writer, format string, debug bool) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	out := w
	if format == "text" || (format != "json" && isTerminal(w)) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !isTerminal(w)}
	}
	level := zerolog.InfoLevel
	if debug {
		level = zerolog.DebugLevel
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
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
