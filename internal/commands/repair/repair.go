// Package repair is the sessions and export commands: list, retry or drop
// the recordings the daemon gave up and the export chunks it parked. They
// change the state file, so the daemon must be stopped; a drop is recorded
// in the state (bucket dropped) and printed.
package repair

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// open opens the state for writing, refusing while a daemon runs.
func open(dir string) (*persistence.Store, error) {
	store, err := persistence.Open(dir)
	if errors.Is(err, persistence.ErrLocked) {
		return nil, fmt.Errorf("a daemon runs on %s: stop it first (it holds the state file); list works while it runs with status", dir)
	}
	return store, err
}

// pick chooses the names to act on: all of them with all, else the ones
// named (each must exist).
func pick(have, named []string, all bool, what string) ([]string, error) {
	switch {
	case all:
		return have, nil
	case len(named) == 0:
		return nil, fmt.Errorf("name the %ss to act on, or give --all", what)
	}
	for _, n := range named {
		if !slices.Contains(have, n) {
			return nil, fmt.Errorf("no %s %q among: %s", what, n, orNone(have))
		}
	}
	return named, nil
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Sessions lists (when act is "list"), retries or drops given-up
// recordings, writing one line each to w.
func Sessions(dir, act string, named []string, all bool, w io.Writer, now time.Time) error {
	store, err := open(dir)
	if err != nil {
		return err
	}
	defer store.Close()
	given, err := store.GivenUpRecordings()
	if err != nil {
		return err
	}
	byID := map[string]persistence.GivenUp{}
	var ids []string
	for _, g := range given {
		byID[g.Recording.ID] = g
		ids = append(ids, g.Recording.ID)
	}
	if act == "list" {
		for _, g := range given {
			fmt.Fprintf(w, "%s  given up (%s) at %s, at index %d\n", g.Recording.ID, g.Reason, g.At.Format(time.RFC3339), g.Recording.Index)
		}
		return nil
	}
	chosen, err := pick(ids, named, all, "given-up recording")
	if err != nil {
		return err
	}
	seq, err := store.LastRecordingSeq()
	if err != nil {
		return err
	}
	var writes []kv.Write
	for _, id := range chosen {
		if act == "retry" {
			seq++
			writes = append(writes, persistence.RecordingRetryWrites(byID[id], seq, now)...)
		} else {
			writes = append(writes, persistence.RecordingDropWrites(byID[id], now)...)
		}
	}
	if err := store.Apply(writes); err != nil {
		return err
	}
	for _, id := range chosen {
		if act == "retry" {
			fmt.Fprintf(w, "%s  queued again: the next start streams it from index %d\n", id, byID[id].Recording.Index)
		} else {
			fmt.Fprintf(w, "%s  dropped for good (recorded in the state): its remaining events are not sent\n", id)
		}
	}
	return nil
}
