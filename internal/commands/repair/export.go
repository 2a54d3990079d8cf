package repair

import (
	"fmt"
	"io"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Export lists (when act is "list"), retries or drops parked export chunks,
// named DAY/CHUNK, writing one line each to w.
func Export(dir, act string, named []string, all bool, w io.Writer, now time.Time) error {
	store, err := open(dir)
	if err != nil {
		return err
	}
	defer store.Close()
	chunks, err := store.ExportInProgress()
	if err != nil {
		return err
	}
	parked := map[string]persistence.ChunkProgress{}
	var names []string
	for _, c := range chunks {
		if c.Parked != nil {
			parked[c.Ref.String()] = c
			names = append(names, c.Ref.String())
		}
	}
	if act == "list" {
		for _, name := range names {
			p := parked[name].Parked
			fmt.Fprintf(w, "%s  parked at %s after %d failures: %s\n", name, p.At.Format(time.RFC3339), p.Attempts, p.Error)
		}
		return nil
	}
	chosen, err := pick(names, named, all, "parked chunk")
	if err != nil {
		return err
	}
	var writes []kv.Write
	for _, name := range chosen {
		if act == "retry" {
			writes = append(writes, persistence.ExportRetryWrites(parked[name])...)
		} else {
			writes = append(writes, persistence.ExportDropWrites(parked[name], now)...)
		}
	}
	if err := store.Apply(writes); err != nil {
		return err
	}
	for _, name := range chosen {
		if act == "retry" {
			fmt.Fprintf(w, "%s  retried first at the next start, from its cursor, with a fresh budget of failures\n", name)
		} else {
			fmt.Fprintf(w, "%s  dropped for good (recorded in the state): its remaining events are not sent\n", name)
		}
	}
	return nil
}
