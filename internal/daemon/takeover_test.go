package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/state/takeover"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// flakySearch answers Unavailable to its first calls, then serves one event.
type flakySearch struct {
	fails  int
	calls  int
	ev     *auditlogpb.EventUnstructured
	cancel func() // called at the third call, when set
}

func (f *flakySearch) SearchUnstructuredEvents(context.Context, time.Time, time.Time, string, []string, int, types.EventOrder, string) ([]*auditlogpb.EventUnstructured, string, error) {
	f.calls++
	if f.calls == 3 && f.cancel != nil {
		f.cancel() // the daemon is asked to stop
	}
	if f.calls <= f.fails {
		return nil, "", status.Error(codes.Unavailable, "connection refused")
	}
	return []*auditlogpb.EventUnstructured{f.ev}, "", nil
}

func TestTakeoverWaitsForTeleportAndWritesNothingMeanwhile(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	for name, content := range map[string]string{"start_time": "2026-11-03T09:00:00Z", "cursor": "", "id": "e1"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	store, err := persistence.Open(dir)
	require.NoError(t, err)
	defer store.Close()
	api := &flakySearch{fails: 3, ev: &auditlogpb.EventUnstructured{Id: "e1", Time: timestamppb.New(at)}}
	taker := takeOver{dir: dir, store: store, api: api, log: zerolog.Nop(),
		retries: backoff.Policy{Initial: time.Millisecond, Max: time.Millisecond},
		query:   takeover.Query{Batch: 20, Window: time.Hour}}
	start, err := taker.startTime(context.Background(), time.Time{})
	require.NoError(t, err)
	require.Equal(t, at.Add(-time.Hour), start)
	require.Equal(t, 5, api.calls, "three failures, then the lookup and the position")
	pos, ok, err := store.AuditPosition()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, persistence.AuditPosition{WindowStart: at, Offset: 1, LastID: "e1", LastTime: at}, pos)

	// A stop while waiting writes nothing: the next start takes over again.
	dir2 := t.TempDir()
	for name, content := range map[string]string{"start_time": "2026-11-03T09:00:00Z", "id": "e1"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir2, name), []byte(content), 0o644))
	}
	store2, err := persistence.Open(dir2)
	require.NoError(t, err)
	defer store2.Close()
	ctx, cancel := context.WithCancel(context.Background())
	taker = takeOver{dir: dir2, store: store2, api: &flakySearch{fails: 1 << 30, cancel: cancel}, log: zerolog.Nop(),
		retries: backoff.Policy{Initial: time.Millisecond, Max: time.Millisecond}, query: takeover.Query{Batch: 20, Window: time.Hour}}
	_, err = taker.startTime(ctx, time.Time{})
	require.ErrorIs(t, err, errStopped)
	_, ok, err = store2.StartTime()
	require.NoError(t, err)
	require.False(t, ok, "nothing written")
}
