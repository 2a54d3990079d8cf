package takeover

import (
	"context"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

const sid = "4d5a2b2e-7c1f-4a43-9d55-1b6a7a0f2c11"

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
}

func TestReadFindsNothingWhereTheOriginalNeverRan(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{persistence.FileName: "x", persistence.DeadLetterFile: "", "dry_run/abc/start_time": "x"})
	o, err := Read(dir)
	require.NoError(t, err)
	require.Nil(t, o)
	o, err = Read(filepath.Join(dir, "absent"))
	require.NoError(t, err)
	require.Nil(t, o)
}

func TestReadEveryLayout(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"start_time":    "2026-11-02T10:00:00Z",
		"window_time":   "2026-11-03T10:00:00+02:00",
		"cursor":        "opaque==",
		"id":            "",
		"session" + sid: string(binary.BigEndian.AppendUint64(nil, 42)),
		"session" + "0b8c6f4e-2d3a-4f5b-8c7d-9e0f1a2b3c4d":           "", // empty after a crash
		"missing_recording" + "7f3e2d1c-0b9a-4887-a665-544332211000": `{"Index":3,"Attempt":1,"Timestamp":"2026-11-03T09:00:00Z"}`,
		"cursor_v2/2026-11-03/completed-chunks":                      "a\nb\n",
		"cursor_v2/2026-11-03/b.chunk":                               "stale", // completed after its cursor was written
		"cursor_v2/2026-11-03/c.chunk":                               " cur \n",
		"cursor_v2/2026-11-03/d.chunk":                               "",
		"cursor_v2/2026-11-04/":                                      "",
		"cursor_v2/not-a-day/x.chunk":                                "ignored",
	})
	require.NoError(t, os.Remove(filepath.Join(dir, "cursor_v2/2026-11-04")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "cursor_v2/2026-11-04"), 0o755))
	o, err := Read(dir)
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC), o.StartTime)
	require.Equal(t, time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC), o.WindowTime)
	require.Equal(t, "opaque==", o.Cursor)
	require.Empty(t, o.ID)
	require.Equal(t, []Recording{
		{ID: "0b8c6f4e-2d3a-4f5b-8c7d-9e0f1a2b3c4d"},
		{ID: sid, Index: 42},
		{ID: "7f3e2d1c-0b9a-4887-a665-544332211000", Index: 3, Missing: true, Attempts: 1, UploadTime: time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)},
	}, o.Recordings)
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	require.Equal(t, map[time.Time]Day{
		day: {Completed: []string{"a", "b"}, Cursors: map[string]string{"c": "cur"}},
		time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC): {Cursors: map[string]string{}},
	}, o.Export)
	require.True(t, o.UsesExport())
}

func TestReadNamesTheFileItCannotUse(t *testing.T) {
	for name, tc := range map[string]struct{ file, content, problem string }{
		"time":         {"start_time", "yesterday", `holds "yesterday"`},
		"index":        {"session" + sid, "abc", "holds 3 bytes"},
		"session id":   {"session-not-a-uuid", "", "is not a session ID"},
		"missing JSON": {"missing_recording" + sid, "{", "is not the JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, map[string]string{tc.file: tc.content})
			_, err := Read(dir)
			var e *Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, filepath.Join(dir, tc.file), e.Path)
			require.Contains(t, e.Error(), tc.problem)
			require.Contains(t, e.Error(), "--storage")
		})
	}
}

// opened is a directory that records the files opened in it.
type opened struct {
	fs.FS
	mu    sync.Mutex
	names []string
}

func (o *opened) Open(name string) (fs.File, error) {
	o.mu.Lock()
	o.names = append(o.names, name)
	o.mu.Unlock()
	return o.FS.Open(name)
}

// A first start over the original's state finds this daemon's files beside
// it after a crash: a stale control socket, which cannot be read, and a
// large dead-letter file. Only the original's files are opened.
func TestReadOpensOnlyTheOriginalsFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"start_time": "2026-11-02T10:00:00Z", "cursor": "c", "id": "e",
		"cursor_v2/2026-11-03/completed-chunks": "a\n"})
	require.NoError(t, syscall.Mknod(filepath.Join(dir, "control.sock"), syscall.S_IFSOCK|0o600, 0))
	big, err := os.Create(filepath.Join(dir, persistence.DeadLetterFile))
	require.NoError(t, err)
	require.NoError(t, big.Truncate(64<<20)) // sparse: large, costing no disk
	require.NoError(t, big.Close())
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".control-123"), 0o700))

	o, err := Read(dir)
	require.NoError(t, err, "the socket and the large file are skipped")
	require.Equal(t, "c", o.Cursor)

	fsys := &opened{FS: os.DirFS(dir)}
	o, err = readFS(fsys, dir)
	require.NoError(t, err)
	require.Equal(t, "e", o.ID)
	require.NotContains(t, fsys.names, persistence.DeadLetterFile)
	require.NotContains(t, fsys.names, "control.sock")
	require.Contains(t, fsys.names, "cursor_v2/2026-11-03/completed-chunks")
}

// A file with one of the original's names that is not a regular file is
// not read (a FIFO would block the start): the start stops, naming it.
func TestReadRefusesAnOriginalsNameOnAnotherKindOfFile(t *testing.T) {
	for _, name := range []string{"cursor", "cursor_v2/2026-11-03/a.chunk"} {
		dir := t.TempDir()
		write(t, dir, map[string]string{"start_time": "2026-11-02T10:00:00Z", "cursor_v2/2026-11-03/completed-chunks": ""})
		require.NoError(t, syscall.Mknod(filepath.Join(dir, name), syscall.S_IFSOCK|0o600, 0))
		_, err := Read(dir)
		var e *Error
		require.ErrorAs(t, err, &e, name)
		require.Equal(t, filepath.Join(dir, name), e.Path)
		require.Contains(t, e.Error(), "not a regular file")
	}
}

// auditLog serves events in (time, id) order with position cursors, the
// way Teleport's backends page.
type auditLog struct {
	evs []*auditlogpb.EventUnstructured
}

func (l *auditLog) SearchUnstructuredEvents(_ context.Context, from, to time.Time, _ string, only []string, limit int, _ types.EventOrder, key string) ([]*auditlogpb.EventUnstructured, string, error) {
	start := 0
	if key != "" {
		n, err := strconv.Atoi(key)
		if err != nil {
			return nil, "", err
		}
		start = n
	}
	var page []*auditlogpb.EventUnstructured
	for i := start; i < len(l.evs); i++ {
		ev := l.evs[i]
		at := ev.Time.AsTime()
		if at.Before(from) || !at.Before(to) || (len(only) > 0 && !slices.Contains(only, ev.Type)) {
			continue
		}
		page = append(page, ev)
		if len(page) == limit {
			return page, strconv.Itoa(i + 1), nil
		}
	}
	return page, "", nil
}

// sameSecond: five events in one second, the fourth of another type.
func sameSecond(t0 time.Time) *auditLog {
	l := &auditLog{}
	for i := range 5 {
		typ := "user.login"
		if i == 3 {
			typ = "exec"
		}
		l.evs = append(l.evs, &auditlogpb.EventUnstructured{Id: "e" + strconv.Itoa(i), Type: typ,
			Time: timestamppb.New(t0.Add(time.Duration(i) * time.Millisecond))})
	}
	return l
}

func TestResumeCountsTheEventsOfTheSameSecond(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	o := &Original{StartTime: t0.Add(-time.Hour), Cursor: "1", ID: "e2"}
	q := Query{Batch: 2, Window: time.Hour, Now: t0.Add(time.Minute)}
	r, err := o.Resume(context.Background(), sameSecond(t0), q)
	require.NoError(t, err)
	// e2's own window starts at its time: e2 is first of it, the offset
	// after it is 1.
	require.Equal(t, persistence.AuditPosition{WindowStart: t0.Add(2 * time.Millisecond), Cursor: "", Offset: 1,
		LastID: "e2", LastTime: t0.Add(2 * time.Millisecond)}, r.Position)
}

func TestResumeSendsTheMomentAgainWhenTypesLeaveTheLastEventOut(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	o := &Original{StartTime: t0.Add(-time.Hour), Cursor: "", ID: "e3"} // exec, and --types is now user.login
	q := Query{Types: []string{"user.login"}, Batch: 2, Window: time.Hour, Now: t0.Add(time.Minute)}
	r, err := o.Resume(context.Background(), sameSecond(t0), q)
	require.NoError(t, err)
	require.Equal(t, persistence.AuditPosition{WindowStart: t0.Add(3 * time.Millisecond)}, r.Position)
	require.Contains(t, r.How, "sent again")
}

func TestResumeRefusesAnIDNotAfterTheCursor(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	o := &Original{Dir: "/s", StartTime: t0.Add(-time.Hour), Cursor: "3", ID: "e1"} // e1 comes before the cursor
	_, err := o.Resume(context.Background(), sameSecond(t0), Query{Batch: 2, Window: time.Hour, Now: t0})
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, "/s/id", e.Path)
	require.Contains(t, e.Error(), "/s/cursor")
	require.Contains(t, e.Error(), "--start-time 2026-11-03T09:00:00Z")
}

func TestWritesTakeOverTheExportState(t *testing.T) {
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	start := day.Add(-36 * time.Hour)
	o := &Original{StartTime: start, Export: map[time.Time]Day{
		day.AddDate(0, 0, 1): {Cursors: map[string]string{"c": "cur"}},
		day:                  {Completed: []string{"a"}, Cursors: map[string]string{}},
	}, Recordings: []Recording{{ID: sid, Index: 7}}}
	now := day.Add(48 * time.Hour)
	writes := o.Writes(start, nil, now)

	store := storetest.Open(t)
	require.NoError(t, store.Apply(writes))
	got, ok, err := store.StartTime()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, start, got)
	_, ok, err = store.AuditPosition()
	require.NoError(t, err)
	require.False(t, ok, "the search cursor is not taken from an export run")
	w, _, err := store.ExportWalker()
	require.NoError(t, err)
	require.Equal(t, persistence.ExportWalker{Day: day, Since: day}, w, "walked from the original's earliest day")
	doneChunks, err := store.ExportDoneChunks(day)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"a": true}, doneChunks)
	c, ok, err := store.ExportChunk(persistence.ChunkRef{Day: day.AddDate(0, 0, 1), Chunk: "c"})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "cur", c.Cursor)
	rec, ok, err := store.Recording(sid)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, persistence.Recording{ID: sid, Seq: 1, Index: 7, Registered: now, UploadTime: now}, rec)
}
