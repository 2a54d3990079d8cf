// Package deadletters is the dead-letters command: list the events Fluentd
// rejected for good, send them again once the receiver is fixed, or purge
// them. Replay and purge change the dead-letter file, which a running
// daemon appends to and rewrites: they need the daemon stopped, and hold
// the state file's shared lock meanwhile, so that it cannot start under
// them.
package deadletters

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// exclusive opens the state read-only, to hold off a daemon start, and
// refuses while a daemon runs.
func exclusive(dir string) (*persistence.Store, error) {
	store, err := persistence.OpenReadOnly(dir, 200*time.Millisecond)
	if errors.Is(err, persistence.ErrLocked) {
		return nil, fmt.Errorf("a daemon runs on %s: stop it first (it appends to and rewrites the dead-letter file, "+
			"so that a replay or a purge beside it could lose letters); list works while it runs", dir)
	}
	return store, err
}

// List writes one line per letter: when, status, event type and ID, URL and
// the start of Fluentd's answer.
func List(dir string, w io.Writer) (int, error) {
	letters, err := persistence.NewDeadLetters(dir).Letters()
	if err != nil {
		return 0, err
	}
	for _, l := range letters {
		fmt.Fprintf(w, "%s  %d  %-22s %-36s %s  %s\n", l.Time.UTC().Format(time.RFC3339), l.Status,
			orDash(l.Type), orDash(l.EventID), l.URL, excerpt(l.Reason))
	}
	return len(letters), nil
}

// Purge empties the dead-letter file after confirm says yes.
func Purge(dir string, confirm func(n int, path string) bool) (int, error) {
	store, err := exclusive(dir)
	if err != nil {
		return 0, err
	}
	defer store.Close()
	d := persistence.NewDeadLetters(dir)
	letters, err := d.Letters()
	if err != nil || len(letters) == 0 {
		return 0, err
	}
	if !confirm(len(letters), d.Path()) {
		return 0, nil
	}
	return d.Purge()
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
