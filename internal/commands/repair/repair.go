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
	return run(dir, act, named, all, w, action[persistence.GivenUp]{
		what: "given-up recording",
		load: (*persistence.Store).GivenUpRecordings,
		name: func(g persistence.GivenUp) string { return g.Recording.ID },
		list: func(g persistence.GivenUp) string {
			return fmt.Sprintf("given up (%s) at %s, at index %d", g.Reason, g.At.Format(time.RFC3339), g.Recording.Index)
		},
		writes: func(store *persistence.Store, chosen []persistence.GivenUp, retry bool) ([]kv.Write, error) {
			seq, err := store.LastRecordingSeq()
			if err != nil {
				return nil, err
			}
			var writes []kv.Write
			for _, g := range chosen {
				if retry {
					seq++
					writes = append(writes, persistence.RecordingRetryWrites(g, seq, now)...)
				} else {
					writes = append(writes, persistence.RecordingDropWrites(g, now)...)
				}
			}
			return writes, nil
		},
		retried: func(g persistence.GivenUp) string {
			return fmt.Sprintf("queued again: the next start streams it from index %d", g.Recording.Index)
		},
	})
}

// action is what a repair command acts on: items of the state named by
// name (those named "" are left out), listed one line each, and the writes
// that retry or drop the chosen ones.
type action[T any] struct {
	what    string
	load    func(*persistence.Store) ([]T, error)
	name    func(T) string
	list    func(T) string
	writes  func(store *persistence.Store, chosen []T, retry bool) ([]kv.Write, error)
	retried func(T) string
}

// run lists (when act is "list"), retries or drops a's items, writing one
// line each to w.
func run[T any](dir, act string, named []string, all bool, w io.Writer, a action[T]) error {
	store, err := open(dir)
	if err != nil {
		return err
	}
	defer store.Close()
	items, err := a.load(store)
	if err != nil {
		return err
	}
	byName := map[string]T{}
	var names []string
	for _, it := range items {
		if n := a.name(it); n != "" {
			byName[n] = it
			names = append(names, n)
		}
	}
	if act == "list" {
		for _, n := range names {
			fmt.Fprintf(w, "%s  %s\n", n, a.list(byName[n]))
		}
		return nil
	}
	chosen, err := pick(names, named, all, a.what)
	if err != nil {
		return err
	}
	picked := make([]T, len(chosen))
	for i, n := range chosen {
		picked[i] = byName[n]
	}
	writes, err := a.writes(store, picked, act == "retry")
	if err != nil {
		return err
	}
	if err := store.Apply(writes); err != nil {
		return err
	}
	for i, n := range chosen {
		if act == "retry" {
			fmt.Fprintf(w, "%s  %s\n", n, a.retried(picked[i]))
		} else {
			fmt.Fprintf(w, "%s  dropped for good (recorded in the state): its remaining events are not sent\n", n)
		}
	}
	return nil
}
