package teleportsrv

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/gravitational/teleport/api/client"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/trace"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func startExport(t *testing.T, export bool) *fixture {
	t.Helper()
	pki := testpki.New(t)
	srv, err := Start(Config{TLS: pki.ServerTLS(pki.TeleportServer, pki.TeleportCA), Export: export})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return &fixture{pki: pki, srv: srv}
}

func listChunks(t *testing.T, clt *client.Client, date time.Time) ([]string, error) {
	t.Helper()
	st := clt.GetEventExportChunks(ctx(t), &auditlogpb.GetEventExportChunksRequest{Date: timestamppb.New(date)})
	defer st.Done()
	var out []string
	for st.Next() {
		out = append(out, st.Item().Chunk)
	}
	return out, st.Done()
}

type exported struct {
	id, cursor string
}

func readChunk(t *testing.T, clt *client.Client, date time.Time, chunk, cursor string) ([]exported, error) {
	t.Helper()
	st := clt.ExportUnstructuredEvents(ctx(t), &auditlogpb.ExportUnstructuredEventsRequest{Date: timestamppb.New(date), Chunk: chunk, Cursor: cursor})
	defer st.Done()
	var out []exported
	for st.Next() {
		out = append(out, exported{id: st.Item().Event.Id, cursor: st.Item().Cursor})
	}
	err := st.Done()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return out, err
}

func TestExportIsOffByDefault(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	require.NoError(t, f.srv.AddEvents(GenerateAuditEvents(10, time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), time.Second, 1)...))
	_, err := listChunks(t, clt, time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC))
	require.True(t, trace.IsNotImplemented(err), "%v", err)
	_, err = readChunk(t, clt, time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), "x", "")
	require.True(t, trace.IsNotImplemented(err), "%v", err)

	f.srv.SetExport(true)
	chunks, err := listChunks(t, clt, time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, chunks, DefaultChunksPerDay)
	f.srv.SetExport(false)
	_, err = listChunks(t, clt, time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC))
	require.True(t, trace.IsNotImplemented(err), "%v", err)
}

func TestExportChunksCoverEachDayOnce(t *testing.T) {
	f := startExport(t, true)
	clt := f.connect(t, f.keyPair())
	// Three days and a bit: 1000 events every 5 minutes from noon.
	t0 := time.Date(2025, 1, 2, 12, 0, 0, 0, time.UTC)
	evs := GenerateAuditEvents(1000, t0, 5*time.Minute, 1)
	require.NoError(t, f.srv.AddEvents(evs...))
	want := map[string][]string{}
	for _, e := range evs {
		k := dayKey(e.GetTime())
		want[k] = append(want[k], e.GetID())
	}
	require.Equal(t, 4, len(want), "from noon on the 2nd to the 5th")

	for k, ids := range want {
		date, err := time.Parse(time.DateOnly, k)
		require.NoError(t, err)
		// Any time of the day names the day.
		chunks, err := listChunks(t, clt, date.Add(17*time.Hour))
		require.NoError(t, err)
		require.Len(t, chunks, DefaultChunksPerDay, k)
		var got []string
		for _, c := range chunks {
			part, err := readChunk(t, clt, date, c, "")
			require.NoError(t, err)
			require.NotEmpty(t, part)
			for i, e := range part {
				got = append(got, e.id)
				if i > 0 {
					// Within a chunk, (time, id) order.
					require.Less(t, slices.Index(ids, part[i-1].id), slices.Index(ids, e.id))
				}
			}
		}
		slices.Sort(got)
		exp := slices.Clone(ids)
		slices.Sort(exp)
		require.Equal(t, exp, got, "day %s", k)
	}

	// A day without events has no chunks.
	chunks, err := listChunks(t, clt, t0.AddDate(0, 0, -3))
	require.NoError(t, err)
	require.Empty(t, chunks)

	// ExportChunks agrees and everything listed is sealed.
	n := 0
	for _, c := range f.srv.ExportChunks() {
		require.True(t, c.Sealed)
		n += len(c.IDs)
	}
	require.Equal(t, 1000, n)
}

func TestLateEventsForAPastDayComeInNewChunks(t *testing.T) {
	f := startExport(t, true)
	clt := f.connect(t, f.keyPair())
	date := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	require.NoError(t, f.srv.AddEvents(GenerateAuditEvents(30, date.Add(time.Hour), time.Minute, 1)...))
	first, err := listChunks(t, clt, date)
	require.NoError(t, err)
	require.Len(t, first, 3)
	before := map[string][]exported{}
	for _, c := range first {
		before[c], err = readChunk(t, clt, date, c, "")
		require.NoError(t, err)
	}

	// Late events of the same (past) day: listed chunks do not change, new
	// ones appear.
	require.NoError(t, f.srv.AddEvents(GenerateAuditEvents(9, date.Add(30*time.Minute), time.Second, 2)...))
	second, err := listChunks(t, clt, date)
	require.NoError(t, err)
	require.Len(t, second, 6)
	for _, c := range first {
		require.Contains(t, second, c)
		again, err := readChunk(t, clt, date, c, "")
		require.NoError(t, err)
		require.Equal(t, before[c], again, "a listed chunk never changes")
	}
	late := 0
	for _, c := range second {
		if slices.Contains(first, c) {
			continue
		}
		part, err := readChunk(t, clt, date, c, "")
		require.NoError(t, err)
		late += len(part)
	}
	require.Equal(t, 9, late)

	// Listing again with nothing new gives the same set.
	third, err := listChunks(t, clt, date)
	require.NoError(t, err)
	require.ElementsMatch(t, second, third)
}

func TestExportResumesFromACursor(t *testing.T) {
	f := startExport(t, true)
	clt := f.connect(t, f.keyPair())
	date := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	require.NoError(t, f.srv.AddEvents(GenerateAuditEvents(60, date, time.Minute, 1)...))
	chunks, err := listChunks(t, clt, date)
	require.NoError(t, err)
	c := chunks[0]
	all, err := readChunk(t, clt, date, c, "")
	require.NoError(t, err)
	require.Greater(t, len(all), 5)
	for i := range all {
		rest, err := readChunk(t, clt, date, c, all[i].cursor)
		require.NoError(t, err)
		if i == len(all)-1 {
			require.Empty(t, rest)
			continue
		}
		require.Equal(t, all[i+1:], rest, "after event %d", i)
	}

	// A cursor of another chunk, or garbage, is refused.
	_, err = readChunk(t, clt, date, chunks[1], all[0].cursor)
	require.True(t, trace.IsBadParameter(err), "%v", err)
	_, err = readChunk(t, clt, date, c, "!!")
	require.True(t, trace.IsBadParameter(err), "%v", err)
	// An unknown chunk is not found.
	_, err = readChunk(t, clt, date, "nope", "")
	require.True(t, trace.IsNotFound(err), "%v", err)
	_, err = listChunks(t, clt, time.Time{}.Add(-time.Hour))
	require.NoError(t, err)
}

func TestExportFaults(t *testing.T) {
	f := startExport(t, true)
	clt := f.connect(t, f.keyPair())
	date := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	require.NoError(t, f.srv.AddEvents(GenerateAuditEvents(60, date, time.Minute, 1)...))

	f.srv.FailNext("GetEventExportChunks", 1, codes.Unavailable)
	_, err := listChunks(t, clt, date)
	require.True(t, trace.IsConnectionProblem(err), "%v", err)
	chunks, err := listChunks(t, clt, date)
	require.NoError(t, err)
	require.Equal(t, 2, f.srv.Calls("GetEventExportChunks"))

	full, err := readChunk(t, clt, date, chunks[0], "")
	require.NoError(t, err)

	// A stream broken mid-chunk: resuming from the last cursor received
	// gives the rest, nothing twice.
	f.srv.FailStreamAfter("ExportUnstructuredEvents", 3, codes.Unavailable)
	part, err := readChunk(t, clt, date, chunks[0], "")
	require.True(t, trace.IsConnectionProblem(err), "%v", err)
	require.Equal(t, full[:3], part)
	rest, err := readChunk(t, clt, date, chunks[0], part[2].cursor)
	require.NoError(t, err)
	require.Equal(t, full[3:], rest)

	f.srv.FailNext("ExportUnstructuredEvents", 1, codes.Unavailable)
	_, err = readChunk(t, clt, date, chunks[0], "")
	require.True(t, trace.IsConnectionProblem(err), "%v", err)

	// Latency applies to streams and ends with the caller.
	f.srv.SetLatency("ExportUnstructuredEvents", time.Hour)
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st := clt.ExportUnstructuredEvents(short, &auditlogpb.ExportUnstructuredEventsRequest{Date: timestamppb.New(date), Chunk: chunks[0]})
	require.False(t, st.Next())
	require.Error(t, st.Done())
	f.srv.SetLatency("ExportUnstructuredEvents", 0)
}
