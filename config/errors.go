package config

import (
	"fmt"
	"strings"
)

// Error is a configuration the daemon cannot run with. Its message is one line
// naming the option, the value and where it came from, what is wrong and how
// to fix it, so that it reads well in a terminal and in a log line.
type Error struct {
	// Option is the flag (--timeout), or for problems of the file itself the
	// TOML key or "config file".
	Option string
	// Value is the text given, "" when nothing was given.
	Value string
	// Source is where Value came from: "flag", "env FDFWD_X",
	// "file path:line" (or "file path" when the line is unknown), "default",
	// or "" when nothing set the option.
	Source string
	// Problem says what is wrong, Fix what to do about it.
	Problem string
	Fix     string

	key string // the TOML key that set Value, when Source is a file
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Source == "":
		b.WriteString(e.Option)
	case e.Value == "" && e.key == "":
		fmt.Fprintf(&b, "%s (%s)", e.Option, e.where())
	default:
		fmt.Fprintf(&b, "invalid %s %q (%s)", e.Option, e.Value, e.where())
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return oneLine(b.String())
}

// where renders Source for the message.
func (e *Error) where() string {
	kind, rest, _ := strings.Cut(e.Source, " ")
	switch kind {
	case "flag":
		return "from the command line"
	case "env":
		return "from " + rest
	case "file":
		if e.key != "" {
			return "from " + e.key + " in " + rest
		}
		return "in " + rest
	case "default":
		return "the default"
	}
	return e.Source
}

// oneLine folds messages of other libraries (TLS, trace) that may span lines.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\t") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}
