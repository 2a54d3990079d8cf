package teleportsrv

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/gravitational/teleport/api/client"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/gravitational/trace"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/fdfwd/teleport-event-handler/tests/await"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

type fixture struct {
	pki *testpki.Bundle
	srv *Server
}

func start(t *testing.T) *fixture {
	t.Helper()
	srv, pki := StartNew(t)
	return &fixture{pki: pki, srv: srv}
}

func (f *fixture) connect(t *testing.T, creds client.Credentials) *client.Client {
	t.Helper()
	return Connect(t, f.srv, creds)
}

func (f *fixture) keyPair() client.Credentials { return KeyPair(f.pki) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRealClientConnectsAndPings(t *testing.T) {
	f := start(t)
	dyn, err := client.NewDynamicIdentityFileCreds(f.pki.IdentityFile)
	require.NoError(t, err)
	for name, creds := range map[string]client.Credentials{
		"key pair":         f.keyPair(),
		"identity file":    client.LoadIdentityFile(f.pki.IdentityFile),
		"dynamic identity": dyn,
	} {
		t.Run(name, func(t *testing.T) {
			clt := f.connect(t, creds)
			pong, err := clt.Ping(ctx(t))
			require.NoError(t, err)
			require.Equal(t, "test-cluster", pong.ClusterName)
			require.Equal(t, "18.0.0-dev", pong.ServerVersion)
			require.NotEmpty(t, pong.RemoteAddr)
		})
	}
	require.Equal(t, 3, f.srv.Calls("Ping"))
}

func TestUntrustedClientIsRefused(t *testing.T) {
	f := start(t)
	// A certificate of another CA (the Fluentd one).
	dir := t.TempDir()
	bad := dir + "/c.crt"
	require.NoError(t, f.pki.FluentdClient.WriteFiles(bad, dir+"/c.key"))
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clt, err := client.New(c, client.Config{
		Addrs:       []string{f.srv.Addr()},
		Credentials: []client.Credentials{client.LoadKeyPair(bad, dir+"/c.key", f.pki.TeleportCAFile)},
		DialTimeout: time.Second,
	})
	if err == nil {
		// Under TLS 1.3 the refusal may surface on the first RPC.
		defer clt.Close()
		_, err = clt.Ping(c)
	}
	require.Error(t, err)
	require.Zero(t, f.srv.Calls("Ping"))
}

func TestConfigIsChecked(t *testing.T) {
	_, err := Start(Config{})
	require.Error(t, err)
	pki := testpki.New(t)
	cfg := pki.ServerTLS(pki.TeleportServer, pki.TeleportCA)
	cfg.ClientAuth = 0
	_, err = Start(Config{TLS: cfg})
	require.ErrorContains(t, err, "client certificates")
}

// page fetches pages until the server returns no cursor.
func pageAll(t *testing.T, clt *client.Client, from, to time.Time, types_ []string, limit int, order types.EventOrder) (got []*auditlogpb.EventUnstructured, pages int, lastStart string) {
	t.Helper()
	key := ""
	for {
		evs, next, err := clt.SearchUnstructuredEvents(ctx(t), from, to, "default", types_, limit, order, key)
		require.NoError(t, err)
		require.LessOrEqual(t, len(evs), limit)
		got = append(got, evs...)
		pages++
		lastStart = key
		if next == "" {
			return got, pages, lastStart
		}
		size := 0
		for _, ev := range evs {
			size += proto.Size(ev.Unstructured)
		}
		require.True(t, len(evs) == limit || size+2000 > MaxPageBytes,
			"a page with a cursor is full, by count or by size: %d events, %d bytes", len(evs), size)
		key = next
		require.Less(t, pages, 10000, "pagination does not end")
	}
}

// logStart is when the generated logs of the paging tests begin.
var logStart = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// startWithLog starts a server holding n generated events from logStart, step
// apart, and connects a client to it.
func startWithLog(t *testing.T, n int, step time.Duration) (*fixture, *client.Client, []apievents.AuditEvent) {
	t.Helper()
	f := start(t)
	evs := GenerateAuditEvents(n, logStart, step, 1)
	require.NoError(t, f.srv.AddEvents(evs...))
	return f, f.connect(t, f.keyPair()), evs
}

func TestPagingVisitsEveryEventOnceInOrder(t *testing.T) {
	f, clt, evs := startWithLog(t, 1000, time.Second)

	got, pages, _ := pageAll(t, clt, logStart.Add(-time.Minute), logStart.Add(time.Hour), nil, 100, types.EventOrderAscending)
	require.Equal(t, 11, pages, "ten full pages, then an empty one")
	require.Len(t, got, 1000)
	for i, ev := range got {
		require.Equal(t, evs[i].GetID(), ev.Id, "position %d", i)
		require.Equal(t, evs[i].GetType(), ev.Type)
		require.Equal(t, evs[i].GetID(), ev.Unstructured.Fields["uid"].GetStringValue())
	}

	// Descending gives the reverse.
	got, _, _ = pageAll(t, clt, logStart.Add(-time.Minute), logStart.Add(time.Hour), nil, 64, types.EventOrderDescending)
	require.Len(t, got, 1000)
	for i, ev := range got {
		require.Equal(t, evs[len(evs)-1-i].GetID(), ev.Id)
	}

	// [from, to): the event at `to` is outside, the one at `from` inside.
	got, _, _ = pageAll(t, clt, logStart.Add(10*time.Second), logStart.Add(20*time.Second), nil, 3, types.EventOrderAscending)
	require.Len(t, got, 10)
	require.Equal(t, evs[10].GetID(), got[0].Id)
	require.Equal(t, evs[19].GetID(), got[9].Id)

	// The server's own order is the oracle's.
	all := f.srv.Events()
	require.Len(t, all, 1000)
	require.Equal(t, evs[0].GetID(), all[0].Id)
}

func TestEventsWithEqualTimesPageByID(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	t0 := time.Now().UTC().Truncate(time.Second)
	evs := GenerateAuditEvents(50, t0, 0, 2) // all at the same instant
	require.NoError(t, f.srv.AddEvents(evs...))
	got, _, _ := pageAll(t, clt, t0, t0.Add(time.Second), nil, 7, types.EventOrderAscending)
	require.Len(t, got, 50)
	seen := map[string]bool{}
	for i, ev := range got {
		require.False(t, seen[ev.Id])
		seen[ev.Id] = true
		if i > 0 {
			require.Less(t, got[i-1].Id, ev.Id)
		}
	}
}

func TestTypeFilter(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	t0 := time.Now().Add(-time.Hour)
	evs := GenerateAuditEvents(500, t0, time.Second, 3)
	require.NoError(t, f.srv.AddEvents(evs...))
	want := 0
	for _, ev := range evs {
		if ev.GetType() == "user.login" || ev.GetType() == "exec" {
			want++
		}
	}
	got, _, _ := pageAll(t, clt, t0, time.Now(), []string{"user.login", "exec"}, 50, types.EventOrderAscending)
	require.Len(t, got, want)
	for _, ev := range got {
		require.Contains(t, []string{"user.login", "exec"}, ev.Type)
	}
}

func TestEventsAddedLaterAreFoundFromTheLastStartKey(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	first := GenerateAuditEvents(250, t0, time.Second, 4)
	require.NoError(t, f.srv.AddEvents(first...))
	end := time.Now().Add(time.Hour)
	got, _, lastStart := pageAll(t, clt, t0, end, nil, 100, types.EventOrderAscending)
	require.Len(t, got, 250)
	require.NotEmpty(t, lastStart)

	more := GenerateAuditEvents(30, time.Now(), time.Millisecond, 5)
	require.NoError(t, f.srv.AddEvents(more...))
	evs, next, err := clt.SearchUnstructuredEvents(ctx(t), t0, end, "default", nil, 100, types.EventOrderAscending, lastStart)
	require.NoError(t, err)
	require.Empty(t, next)
	require.Len(t, evs, 50+30, "the last page again, then the new events")
	for i, ev := range evs[50:] {
		require.Equal(t, more[i].GetID(), ev.Id)
	}

	require.ErrorContains(t, f.srv.AddEvents(more[0]), "already added")
}

func TestAddEventsWhileClientsRead(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	t0 := time.Now().Add(-time.Hour)
	evs := GenerateAuditEvents(2000, t0, time.Second, 6)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < len(evs); i += 100 {
			if err := f.srv.AddEvents(evs[i : i+100]...); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Follow the log like the daemon: re-query from the last start key until
	// everything has arrived.
	seen := map[string]int{}
	key, end := "", time.Now().Add(time.Hour)
	deadline := time.Now().Add(20 * time.Second)
	var order []string
	for len(order) < len(evs) {
		require.True(t, time.Now().Before(deadline), "got %d of %d", len(order), len(evs))
		page, next, err := clt.SearchUnstructuredEvents(ctx(t), t0, end, "default", nil, 100, types.EventOrderAscending, key)
		require.NoError(t, err)
		for _, ev := range page {
			if seen[ev.Id] == 0 {
				order = append(order, ev.Id)
			}
			seen[ev.Id]++
		}
		if next != "" {
			key = next
		}
	}
	wg.Wait()
	for i, ev := range evs {
		require.Equal(t, ev.GetID(), order[i])
	}
}

func TestBadRequestsAreRejected(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	now := time.Now()
	_, _, err := clt.SearchUnstructuredEvents(ctx(t), now, now, "default", nil, 10, types.EventOrderAscending, "%%%")
	require.True(t, trace.IsBadParameter(err), "%v", err)
	_, _, err = clt.SearchUnstructuredEvents(ctx(t), now, now, "default", nil, 10, types.EventOrder(7), "")
	require.True(t, trace.IsBadParameter(err), "%v", err)
	_, _, err = clt.SearchUnstructuredEvents(ctx(t), now, now, "other", nil, 10, types.EventOrderAscending, "")
	require.True(t, trace.IsBadParameter(err), "%v", err)
	// Teleport refuses a limit over its EventsMaxIterationLimit.
	_, _, err = clt.SearchUnstructuredEvents(ctx(t), now, now, "default", nil, MaxLimit+1, types.EventOrderAscending, "")
	require.True(t, trace.IsBadParameter(err), "%v", err)
	require.ErrorContains(t, err, "limit 10001 exceeds 10000")
	_, _, err = clt.SearchUnstructuredEvents(ctx(t), now, now, "default", nil, MaxLimit, types.EventOrderAscending, "")
	require.NoError(t, err)
}

// As Teleport's backends do, a page ends before its events reach
// MaxPageBytes, with a cursor, however large the limit: the largest limit
// reads the whole log all the same.
func TestPagesEndAtAMegabyte(t *testing.T) {
	_, clt, _ := startWithLog(t, 10000, time.Millisecond)
	page, next, err := clt.SearchUnstructuredEvents(ctx(t), logStart, logStart.Add(time.Hour), "default", nil, MaxLimit, types.EventOrderAscending, "")
	require.NoError(t, err)
	require.NotEmpty(t, next, "cut by size: more follows")
	require.Less(t, len(page), 10000)
	size := 0
	for _, ev := range page {
		size += proto.Size(ev.Unstructured)
	}
	require.Less(t, size, MaxPageBytes)
	got, pages, _ := pageAll(t, clt, logStart, logStart.Add(time.Hour), nil, MaxLimit, types.EventOrderAscending)
	require.Equal(t, 10000, len(got))
	require.Greater(t, pages, 2)
}

func TestSessionRecordings(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	rec := GenerateRecording("sid-1", 40, time.Now().Add(-time.Minute))
	require.NoError(t, f.srv.AddRecording("sid-1", rec...))

	got, err := stream(t, clt, "sid-1", 0)
	require.NoError(t, err)
	require.Len(t, got, 40)
	for i, ev := range got {
		require.Equal(t, int64(i), ev.Index)
		require.Equal(t, float64(i), ev.Unstructured.Fields["ei"].GetNumberValue())
		require.Equal(t, rec[i].GetType(), ev.Type)
	}
	require.Equal(t, "session.start", got[0].Type)
	require.Equal(t, "session.end", got[39].Type)
	require.Equal(t, "print", got[1].Type, "the generator starts output right away")
	require.NotNil(t, got[1].Unstructured.Fields["data"])
	require.Nil(t, got[1].Unstructured.Fields["uid"], "print events have no ID, as in Teleport")

	got, err = stream(t, clt, "sid-1", 35)
	require.NoError(t, err)
	require.Len(t, got, 5)
	require.Equal(t, int64(35), got[0].Index)

	_, err = stream(t, clt, "missing", 0)
	require.True(t, trace.IsNotFound(err), "%v", err)

	f.srv.SetRecordingAvailableAfter("sid-2", 2)
	require.NoError(t, f.srv.AddRecording("sid-2", GenerateRecording("sid-2", 3, time.Now())...))
	for range 2 {
		_, err = stream(t, clt, "sid-2", 0)
		require.True(t, trace.IsNotFound(err), "%v", err)
	}
	got, err = stream(t, clt, "sid-2", 0)
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, 6, f.srv.Calls("StreamUnstructuredSessionEvents"))
}

func stream(t *testing.T, clt *client.Client, sid string, from int64) ([]*auditlogpb.EventUnstructured, error) {
	t.Helper()
	c := ctx(t)
	ch, errs := clt.StreamUnstructuredSessionEvents(c, sid, from)
	var got []*auditlogpb.EventUnstructured
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return got, nil
			}
			got = append(got, ev)
		case err := <-errs:
			return got, err
		case <-c.Done():
			t.Fatal("stream did not end")
		}
	}
}

func TestFaults(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	f.srv.FailNext("GetUnstructuredEvents", 2, codes.Unavailable)
	now := time.Now()
	for range 2 {
		_, _, err := clt.SearchUnstructuredEvents(ctx(t), now.Add(-time.Hour), now, "default", nil, 10, types.EventOrderAscending, "")
		require.True(t, trace.IsConnectionProblem(err), "%v", err)
	}
	_, _, err := clt.SearchUnstructuredEvents(ctx(t), now.Add(-time.Hour), now, "default", nil, 10, types.EventOrderAscending, "")
	require.NoError(t, err)
	require.Equal(t, 3, f.srv.Calls("GetUnstructuredEvents"))

	f.srv.FailNext("Ping", 1, codes.PermissionDenied)
	_, err = clt.Ping(ctx(t))
	require.True(t, trace.IsAccessDenied(err), "%v", err)

	f.srv.SetLatency("Ping", 300*time.Millisecond)
	began := time.Now()
	_, err = clt.Ping(ctx(t))
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = clt.Ping(short)
	require.Error(t, err)
	f.srv.SetLatency("Ping", 0)
	_, err = clt.Ping(ctx(t))
	require.NoError(t, err)

	// A long delay does not hold Close up.
	f.srv.SetLatency("Ping", time.Hour)
	pinged := make(chan error, 1)
	go func() { _, err := clt.Ping(context.Background()); pinged <- err }()
	require.Eventually(t, func() bool { return f.srv.Calls("Ping") == 5 }, 5*time.Second, 10*time.Millisecond)
	await.Returns(t, 5*time.Second, "Close waits for an injected delay", f.srv.Close)
	select {
	case err := <-pinged:
		require.Error(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the delayed call did not end with the server")
	}
}

func TestLocks(t *testing.T) {
	f := start(t)
	clt := f.connect(t, f.keyPair())
	lock, err := types.NewLock("failed-logins-mallory", types.LockSpecV2{
		Target:  types.LockTarget{User: "mallory"},
		Message: "too many failed logins",
	})
	require.NoError(t, err)
	require.NoError(t, clt.UpsertLock(ctx(t), lock))
	locks := f.srv.Locks()
	require.Len(t, locks, 1)
	require.Equal(t, "mallory", locks[0].Spec.Target.User)
	require.Equal(t, "too many failed logins", locks[0].Spec.Message)

	got, err := clt.GetLock(ctx(t), "failed-logins-mallory")
	require.NoError(t, err)
	require.Equal(t, "mallory", got.Target().User)
	_, err = clt.GetLock(ctx(t), "nobody")
	require.True(t, trace.IsNotFound(err), "%v", err)
	all, err := clt.GetLocks(ctx(t), true, types.LockTarget{User: "mallory"})
	require.NoError(t, err)
	require.Len(t, all, 1)

	empty, err := types.NewLock("empty", types.LockSpecV2{})
	if err == nil { // NewLock validates already in some versions
		err = clt.UpsertLock(ctx(t), empty)
	}
	require.Error(t, err)
	require.Len(t, f.srv.Locks(), 1)
}

func TestGenerateAuditEvents(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	evs := GenerateAuditEvents(2000, t0, time.Second, 42)
	require.Len(t, evs, 2000)
	ids := map[string]bool{}
	byType := map[string]int{}
	failures := 0
	for i, ev := range evs {
		require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, ev.GetID())
		require.False(t, ids[ev.GetID()], "duplicate ID")
		ids[ev.GetID()] = true
		require.Equal(t, t0.Add(time.Duration(i)*time.Second), ev.GetTime())
		require.NotEmpty(t, ev.GetCode())
		byType[ev.GetType()]++
		if l, ok := ev.(*apievents.UserLogin); ok {
			require.NotEmpty(t, l.User)
			require.NotEmpty(t, l.Login)
			if !l.Success {
				failures++
				require.NotEmpty(t, l.Error)
				require.Equal(t, "T1000W", l.Code)
			}
		}
		if u, ok := ev.(*apievents.SessionUpload); ok {
			require.NotEmpty(t, u.SessionID)
		}
		// Every event converts and carries the fields the daemon forwards.
		u, err := apievents.ToUnstructured(ev)
		require.NoError(t, err)
		raw, err := json.Marshal(u.Unstructured)
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(raw, &m))
		for _, k := range []string{"event", "uid", "code", "time", "cluster_name"} {
			require.Contains(t, m, k, ev.GetType())
		}
	}
	for _, typ := range []string{"user.login", "session.start", "session.end", "session.upload", "exec", "access_request.create", "user.create", "role.created", "cert.create", "db.session.query"} {
		require.Greater(t, byType[typ], 10, typ)
	}
	require.Greater(t, failures, 50)

	again := GenerateAuditEvents(2000, t0, time.Second, 42)
	require.Equal(t, evs, again, "a seed gives the same events")
	other := GenerateAuditEvents(10, t0, time.Second, 43)
	require.NotEqual(t, evs[0].GetID(), other[0].GetID())
}

func TestGenerateRecording(t *testing.T) {
	t0 := time.Now()
	rec := GenerateRecording("abc", 100, t0)
	require.Len(t, rec, 100)
	var last time.Time
	for i, ev := range rec {
		require.Equal(t, int64(i), ev.GetIndex())
		require.False(t, ev.GetTime().Before(last), "times do not go back")
		last = ev.GetTime()
		if ev.GetType() != "print" {
			require.NotEmpty(t, ev.GetID())
		}
	}
	require.Equal(t, "session.start", rec[0].GetType())
	require.Equal(t, "session.end", rec[99].GetType())
	require.Equal(t, "abc", rec[0].(*apievents.SessionStart).SessionID)
	require.Equal(t, rec, GenerateRecording("abc", 100, t0))
	require.Nil(t, GenerateRecording("abc", 0, t0))
	require.Len(t, GenerateRecording("abc", 1, t0), 1)
}
