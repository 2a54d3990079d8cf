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
	return run(dir, act, named, all, w, action[persistence.ChunkProgress]{
		what: "parked chunk",
		load: (*persistence.Store).ExportInProgress,
		name: func(c persistence.ChunkProgress) string {
			if c.Parked == nil {
				return ""
			}
			return c.Ref.String()
		},
		list: func(c persistence.ChunkProgress) string {
			p := c.Parked
			return fmt.Sprintf("parked at %s after %d failures: %s", p.At.Format(time.RFC3339), p.Attempts, p.Error)
		},
		writes: func(_ *persistence.Store, chosen []persistence.ChunkProgress, retry bool) ([]kv.Write, error) {
			var writes []kv.Write
			for _, c := range chosen {
				if retry {
					writes = append(writes, persistence.ExportRetryWrites(c)...)
				} else {
					writes = append(writes, persistence.ExportDropWrites(c, now)...)
				}
			}
			return writes, nil
		},
		retried: func(persistence.ChunkProgress) string {
			return "retried first at the next start, from its cursor, with a fresh budget of failures"
		},
	})
}
