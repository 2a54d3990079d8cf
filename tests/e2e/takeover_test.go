package e2e

import (
	be "encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// originalBatch is the original plugin's --batch default, the page size of
// the cursors it stored.
const originalBatch = 20

// writeOriginal lays out files as the original plugin does: one file per
// key, flat, in the per-cluster directory (names with a slash in
// subdirectories, as its export cursor keeps them).
func writeOriginal(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, content, 0o644))
	}
}

// requireUntouched checks that the original's files are as written.
func requireUntouched(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, content := range files {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
		require.NoError(t, err)
		require.Equal(t, string(content), string(got), "the original's %s is left as it was", name)
	}
}

// searchCursor is the cursor the original stored for the page holding
// evs[i], reading pages of originalBatch from the first event: the page's
// own cursor (empty for the first page).
func searchCursor(evs []apievents.AuditEvent, i int) string {
	first := i / originalBatch * originalBatch
	if first == 0 {
		return ""
	}
	return teleportsrv.SearchCursor(evs[first-1].GetTime(), evs[first-1].GetID())
}

// requireContinuedAfter checks that the daemon continued where the
// original stopped after sending evs[:sent]: none of those arrived (its last
// one at most once more), and every later one arrived once.
func requireContinuedAfter(t *testing.T, e *env, evs []apievents.AuditEvent, sent int) {
	t.Helper()
	got := e.Fluentd.CountByUID()
	for i, ev := range evs {
		switch {
		case i < sent-1:
			require.Zero(t, got[ev.GetID()], "event %d was sent by the original", i)
		case i == sent-1:
			require.LessOrEqual(t, got[ev.GetID()], 1, "the original's last event is sent once more at most")
		default:
			require.Equal(t, 1, got[ev.GetID()], "event %d was not sent by the original", i)
		}
	}
}

func sessionIndex(i int64) []byte { return be.BigEndian.AppendUint64(nil, uint64(i)) }

// uploads are the session IDs of the session.upload events among evs.
func uploads(evs []apievents.AuditEvent) []string {
	var out []string
	for _, ev := range evs {
		if up, ok := ev.(*apievents.SessionUpload); ok {
			out = append(out, up.SessionID)
		}
	}
	return out
}

// recorded counts the events of a recording that arrived, by index.
func recorded(e *env, sid string) map[int64]int {
	got := map[int64]int{}
	for _, raw := range e.Fluentd.Records(harness.SessionTag(sid)) {
		var r struct {
			EI int64 `json:"ei"`
		}
		if json.Unmarshal(raw, &r) == nil {
			got[r.EI]++
		}
	}
	return got
}

// A drop-in replacement on the original's --storage continues where the
// original stopped: the events it had not sent arrive (its own last one at
// most once more), those it had sent do not, a recording it was streaming
// resumes at its index, one it had not found yet is looked for, and its
// files are left as they were. On a Teleport with the export API the
// search position seeds the export path.
func TestTakesOverFromTheOriginalPlugin(t *testing.T) {
	t.Parallel()
	for _, export := range []bool{false, true} {
		t.Run(map[bool]string{false: "search", true: "export API"}[export], func(t *testing.T) {
			t.Parallel()
			takeOverSearchState(t, export)
		})
	}
}

func takeOverSearchState(t *testing.T, export bool) {
	e := newEnv(t)
	e.Teleport.SetExport(export)
	evs := e.Seed(300, 91)
	const sent = 157 // the original had sent evs[:sent]
	done, later := uploads(evs[:sent]), uploads(evs[sent:])
	require.GreaterOrEqual(t, len(done), 3, "the seed has recordings the original was working on")
	require.NotEmpty(t, later)
	streaming, missing := done[0], done[1]
	start := e.T0.Add(-time.Minute).UTC().Format(time.RFC3339)
	missingJSON, err := json.Marshal(map[string]any{"Index": 0, "Attempt": 1, "Timestamp": e.T0})
	require.NoError(t, err)
	files := map[string][]byte{
		"start_time":                  []byte(start),
		"cursor":                      []byte(searchCursor(evs, sent-1)),
		"id":                          []byte(evs[sent-1].GetID()),
		"session" + streaming:         sessionIndex(2),
		"missing_recording" + missing: missingJSON,
	}
	dir := persistence.Dir(e.Storage, e.Teleport.Addr())
	writeOriginal(t, dir, files)

	p := harness.Run(t, binary, nil, without(e.Args("--exit-on-last-event"), "--start-time")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	require.Contains(t, p.Output(), "took over the original Event Handler plugin's state")
	if export {
		require.Contains(t, p.Output(), "reading the audit log with the export API")
	}
	requireContinuedAfter(t, e, evs, sent)
	for _, sid := range done[2:] {
		require.Empty(t, recorded(e, sid), "the original had finished recording %s", sid)
	}
	rec := recorded(e, streaming)
	for _, ev := range e.Recordings[streaming] {
		want := 1
		if ev.GetIndex() < 2 || defaultSkip[ev.GetType()] {
			want = 0
		}
		require.Equal(t, want, rec[ev.GetIndex()], "recording in progress, event %d", ev.GetIndex())
	}
	for _, sid := range append(later, missing) {
		got := recorded(e, sid)
		for _, ev := range e.Recordings[sid] {
			if !defaultSkip[ev.GetType()] {
				require.Equal(t, 1, got[ev.GetIndex()], "recording %s is sent whole: event %d", sid, ev.GetIndex())
			}
		}
	}
	requireUntouched(t, dir, files)

	// The state is this daemon's now: a second start takes nothing over.
	before := e.Fluentd.Count()
	p = harness.Run(t, binary, nil, without(e.Args("--exit-on-last-event"), "--start-time")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	require.NotContains(t, p.Output(), "took over")
	require.Equal(t, before, e.Fluentd.Count(), "nothing is sent twice")
}

// The later layout: a search window (window_time) and, after a crash, an
// empty id: the original's page is sent again from its first event, and
// nothing is lost. The same --start-time as the original's is accepted.
func TestTakesOverAnEmptyIDByResendingItsPage(t *testing.T) {
	e, evs := seededEnv(t, 120, 93)
	const sent = 75
	start := e.T0.Add(-time.Minute).UTC().Format(time.RFC3339)
	files := map[string][]byte{
		"start_time":  []byte(start),
		"window_time": []byte(start),
		"cursor":      []byte(searchCursor(evs, sent-1)),
		"id":          {},
	}
	dir := persistence.Dir(e.Storage, e.Teleport.Addr())
	writeOriginal(t, dir, files)

	p := harness.Run(t, binary, nil, e.Args("--exit-on-last-event", "--start-time", start)...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	require.Contains(t, p.Output(), "took over the original Event Handler plugin's state")
	got := e.Fluentd.CountByUID()
	page := (sent - 1) / originalBatch * originalBatch
	for i, ev := range evs {
		want := 1
		if i < page {
			want = 0
		}
		require.Equal(t, want, got[ev.GetID()], "event %d", i)
	}
	requireUntouched(t, dir, files)
}

// The export API layout (cursor_v2): completed chunks are not read again,
// a chunk in progress resumes at its cursor.
func TestTakesOverTheOriginalsExportCursor(t *testing.T) {
	e := parallelEnv(t)
	e.Teleport.SetExport(true)
	evs := e.Seed(150, 95)
	chunks := e.Teleport.ExportChunks()
	require.GreaterOrEqual(t, len(chunks), 3)
	completed, partial := chunks[0], chunks[1]
	require.Greater(t, len(partial.IDs), 3)
	start := e.T0.Add(-time.Minute).UTC().Format(time.RFC3339)
	files := map[string][]byte{
		"start_time": []byte(start),
		"cursor_v2/" + completed.Day + "/completed-chunks":         []byte(completed.Name + "\n"),
		"cursor_v2/" + partial.Day + "/" + partial.Name + ".chunk": []byte(teleportsrv.ChunkCursor(partial.Name, 3)),
	}
	dir := persistence.Dir(e.Storage, e.Teleport.Addr())
	writeOriginal(t, dir, files)

	p := harness.Run(t, binary, nil, without(e.Args("--exit-on-last-event"), "--start-time")...)
	require.Equal(t, 0, p.Wait(t, time.Minute), p.Output())
	require.Contains(t, p.Output(), "took over the original Event Handler plugin's state")
	require.Contains(t, p.Output(), "reading the audit log with the export API")
	skipped := map[string]bool{}
	for _, id := range completed.IDs {
		skipped[id] = true
	}
	for _, id := range partial.IDs[:3] {
		skipped[id] = true
	}
	got := e.Fluentd.CountByUID()
	for _, ev := range evs {
		want := 1
		if skipped[ev.GetID()] {
			want = 0
		}
		require.Equal(t, want, got[ev.GetID()], "event %s", ev.GetID())
	}
	requireUntouched(t, dir, files)
}

// Files that cannot be taken over stop the start, naming them and the
// choices; nothing is sent from a start time of now.
func TestUnusableOriginalStateStopsTheStart(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		files func(evs []apievents.AuditEvent, start string) map[string][]byte
		args  []string
		want  []string
	}{
		"empty start_time": {
			files: func(evs []apievents.AuditEvent, _ string) map[string][]byte {
				return map[string][]byte{"start_time": {}, "cursor": []byte(searchCursor(evs, 30)), "id": []byte(evs[30].GetID())}
			},
			want: []string{"start_time", "is empty", "--start-time"},
		},
		"id not on the cursor's page": {
			files: func(evs []apievents.AuditEvent, start string) map[string][]byte {
				return map[string][]byte{"start_time": []byte(start), "cursor": []byte(searchCursor(evs, 30)), "id": []byte("no-such-event")}
			},
			want: []string{"cursor", "no-such-event", "--start-time"},
		},
		"a different --start-time": {
			files: func(evs []apievents.AuditEvent, start string) map[string][]byte {
				return map[string][]byte{"start_time": []byte(start), "cursor": []byte(searchCursor(evs, 30)), "id": []byte(evs[30].GetID())}
			},
			args: []string{"--start-time", "2020-01-01T00:00:00Z"},
			want: []string{"start_time", "2020-01-01T00:00:00Z", "--storage"},
		},
		"a recording index of the wrong size": {
			files: func(evs []apievents.AuditEvent, start string) map[string][]byte {
				return map[string][]byte{"start_time": []byte(start), "session" + harness.SID("x"): {1, 2, 3}}
			},
			want: []string{"session" + harness.SID("x"), "3 bytes"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			e, evs := seededEnv(t, 60, 97)
			files := tc.files(evs, e.T0.Add(-time.Minute).UTC().Format(time.RFC3339))
			dir := persistence.Dir(e.Storage, e.Teleport.Addr())
			writeOriginal(t, dir, files)
			p := harness.Run(t, binary, nil, append(without(e.Args("--exit-on-last-event"), "--start-time"), tc.args...)...)
			require.Equal(t, 1, p.Wait(t, 30*time.Second), p.Output())
			for _, w := range tc.want {
				require.Contains(t, p.Output(), w)
			}
			require.Zero(t, e.Fluentd.Count(), "nothing is sent")
			requireUntouched(t, dir, files)
		})
	}
}
