package config

// What a command line needs to know of the options: their names, which
// are switches and which come before the command, the help, and the name
// nearest to a typo. The parser itself is the program's
// (cmd/teleport-event-handler); it hands back the text of each option
// given, by long name, to Resolve.

import (
	"fmt"
	"strings"

	"github.com/agnivade/levenshtein"
)

// Flag is one option as the command line takes it.
type Flag struct {
	Long  string // without the dashes
	Short rune   // 0 for none
	// Switch: an option that takes no value; =true and =false still work.
	Switch bool
	// Global: taken before the command too, as -c and -d are upstream.
	Global bool
}

// Flags lists every option the command line takes, in the table's order,
// the original plugin's retired ones included.
func Flags() []Flag {
	fs := make([]Flag, 0, len(options)+8)
	for _, o := range options {
		if o.lead != "" {
			fs = append(fs, Flag{Long: o.lead, Switch: o.isSwitch(), Global: o.global})
		}
		fs = append(fs, Flag{Long: o.flag, Short: o.short, Switch: o.isSwitch(), Global: o.global})
	}
	return fs
}

// Closest is the option nearest to an unknown flag name, "" when none is
// near enough to be a typo of it.
func Closest(name string) string {
	best, bestD := "", 0
	for _, o := range options {
		if o.retired != nil {
			continue
		}
		for _, n := range []string{o.lead, o.flag} {
			if n == "" {
				continue
			}
			if d := levenshtein.ComputeDistance(name, n); best == "" || d < bestD {
				best, bestD = n, d
			}
		}
	}
	if name == "" || bestD > max(2, len(name)/3) {
		return ""
	}
	return best
}

// WriteGlobalHelp writes the help of the options taken before the command.
func WriteGlobalHelp(b *strings.Builder) {
	for _, o := range options {
		if o.global && o.retired == nil {
			o.writeHelp(b)
		}
	}
}

// WriteStartHelp writes the help of start's options, by group. Each option
// gets its flag on one line, then what it does and its default, then where
// else it can be set, the way Go's flag package lays out its help.
func WriteStartHelp(b *strings.Builder) {
	for _, group := range groups {
		fmt.Fprintf(b, "\n%s:\n", group)
		for _, o := range options {
			if o.group == group {
				o.writeHelp(b)
			}
		}
	}
}
