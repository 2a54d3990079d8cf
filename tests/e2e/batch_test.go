package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// With --fluentd-batch the events go as JSON arrays, each exactly once, and
// a rejected event is found and dead-lettered alone.
func TestFluentdBatchSendsArraysAndIsolatesARejectedEvent(t *testing.T) {
	e, evs := seededEnv(t, 1000, 8)
	e.AddSession("batched", 400, e.T0.Add(10*time.Second))
	bad := evs[321].GetID()
	e.Fluentd.RejectWhere(400, func(r map[string]any) bool { return r["uid"] == bad })
	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--batch", "100", "--fluentd-batch", "25", "--skip-session-types", "")...)
	require.Equal(t, 3, p.Wait(t, 2*time.Minute), "one event dead-lettered")
	require.Zero(t, harness.Delivered(t, e.Fluentd, evs, map[string]bool{bad: true}), "duplicates in a clean run")
	require.Zero(t, e.SessionsDelivered(nil), "duplicates in a clean run")
	require.Len(t, e.Fluentd.Records(harness.SessionTag("batched")), 400)

	records := e.Fluentd.Count()
	// Arrays: far fewer requests than records, even with the rejected
	// batch sent again one event at a time.
	require.Less(t, e.Fluentd.Requests(), records/5, "requests for %d records", records)
	require.Equal(t, 2, e.Fluentd.Statuses()[400], "the bad event's batch, then the bad event alone: %v", e.Fluentd.Statuses())

	f, err := os.Open(filepath.Join(persistence.Dir(e.Storage, e.Teleport.Addr()), persistence.DeadLetterFile))
	require.NoError(t, err)
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l persistence.DeadLetter
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		ids = append(ids, l.EventID)
	}
	require.Equal(t, []string{bad}, ids)
}
