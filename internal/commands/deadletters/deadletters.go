// Package deadletters is the dead-letters command: list the events Fluentd
// rejected for good, send them again once the receiver is fixed, or purge
// them. Replay and purge rewrite the dead-letter file, which a running
// daemon appends to and rewrites, and which another replay or purge
// rewrites too: they hold the state file's exclusive lock meanwhile, as the
// sessions and export commands do, so that none of these runs beside them
// and no daemon starts under them.
package deadletters

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// HeldError is the refusal of a replay or purge while another process
// holds the state file: a daemon, or another command that changes it.
type HeldError struct {
	Path    string
	Holders []persistence.Holder // what the kernel says; may be none
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s: stop it first, or wait for it to end. Replay and purge rewrite the dead-letter file and need "+
		"the state to themselves: beside a daemon or another replay or purge, letters could be sent twice or purged ones "+
		"come back (list works meanwhile)", e.holder())
}

// holder says who holds the state file, as precisely as the kernel tells.
func (e *HeldError) holder() string {
	if len(e.Holders) == 0 {
		return fmt.Sprintf("another process holds the state file %s (a running daemon, or a dead-letters replay or purge, "+
			"or a sessions or export command)", e.Path)
	}
	names := make([]string, len(e.Holders))
	for i, h := range e.Holders {
		names[i] = describe(h)
	}
	return fmt.Sprintf("the state file %s is held by %s", e.Path, strings.Join(names, ", and by "))
}

// Unwrap lets callers test for persistence.ErrLocked.
func (e *HeldError) Unwrap() error { return persistence.ErrLocked }

// commands are the command words of the command line; the first one in a
// holder's arguments says what it is (global options, which come first,
// take no command word as a value).
var commands = map[string]string{
	"start":        "a running daemon",
	"dead-letters": "another dead-letters command",
	"sessions":     "a sessions command",
	"export":       "an export command",
	"status":       "a status command",
}

// describe names a holder: what it is, its PID and command line.
func describe(h persistence.Holder) string {
	if h.PID <= 0 {
		return "a process in another PID namespace (another container?)"
	}
	what := "process"
	for _, a := range h.Args[min(1, len(h.Args)):] {
		if w, ok := commands[a]; ok {
			what = w
			break
		}
	}
	cmdline := strings.Join(h.Args, " ")
	if len(cmdline) > 160 {
		cmdline = strings.ToValidUTF8(cmdline[:160], "") + "..."
	}
	if cmdline == "" {
		return fmt.Sprintf("%s %d", what, h.PID)
	}
	return fmt.Sprintf("%s (pid %d: %s)", what, h.PID, cmdline)
}

// exclusive opens the state for writing, alone: it refuses while another
// process holds it, naming that process.
func exclusive(dir string) (*persistence.Store, error) {
	path := filepath.Join(dir, persistence.FileName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		// Open would create it: this is not the daemon's directory.
		return nil, fmt.Errorf("no state file %s: no daemon has run with this --storage and --teleport-addr", path)
	}
	store, err := persistence.Open(dir)
	if errors.Is(err, persistence.ErrLocked) {
		return nil, &HeldError{Path: path, Holders: persistence.Holders(dir)}
	}
	return store, err
}

// List writes one line per letter: when, status, event type and ID, URL and
// the start of Fluentd's answer. It returns the letters' number and the
// lines of the file that are not letters (see persistence.BadLine), which
// the caller reports.
func List(dir string, w io.Writer) (int, []persistence.BadLine, error) {
	letters, bad, err := persistence.NewDeadLetters(dir).Letters()
	if err != nil {
		return 0, nil, err
	}
	for _, l := range letters {
		reason := excerpt(l.Reason)
		if l.TakenBack {
			reason = "taken back, owed (the next start sends it again): " + reason
		}
		fmt.Fprintf(w, "%s  %d  %-22s %-36s %s  %s\n", l.Time.UTC().Format(time.RFC3339), l.Status,
			orDash(l.Type), orDash(l.EventID), l.URL, reason)
	}
	return len(letters), bad, nil
}

// Purge takes every letter out of the dead-letter file after confirm says
// yes. The lines that are not letters stay in the file: confirm is told of
// them, and they are returned, numbered as they are in the file now, for
// the caller to report.
func Purge(dir string, confirm func(n int, path string, bad []persistence.BadLine) bool) (int, []persistence.BadLine, error) {
	store, err := exclusive(dir)
	if err != nil {
		return 0, nil, err
	}
	defer store.Close()
	d := persistence.NewDeadLetters(dir)
	letters, bad, err := d.Letters()
	if err != nil || len(letters) == 0 || !confirm(len(letters), d.Path(), bad) {
		return 0, bad, err
	}
	n, err := d.Purge()
	if err != nil {
		return 0, bad, err
	}
	_, bad, err = d.Letters()
	return n, bad, err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func excerpt(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
