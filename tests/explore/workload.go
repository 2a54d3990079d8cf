package explore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	auditlogv1 "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// expect is what the workload put in Teleport, and what may not arrive.
type expect struct {
	mu sync.Mutex // guards audit: events come from the trickle too
	// audit are the audit events' IDs.
	audit []string
	// mayDeadLetter are the events the receiver refuses for good (400,
	// or too large for its limit), with why.
	mayDeadLetter map[string]string
	// sessions are the recordings by session ID: the indexes sent (the
	// skipped types left out).
	sessions map[string][]int64
	// missing and broken recordings may be given up.
	missing, broken map[string]bool
	// live counts the events that came during the faults.
	live   int
	canary string
}

// seedWorkload puts p's workload into the test Teleport server and the
// receiver's rules, and returns what to expect.
func seedWorkload(t *testing.T, e *harness.Env, p Plan) *expect {
	r := rand.New(rand.NewPCG(p.Seed, 0x776f726b))
	x := &expect{mayDeadLetter: map[string]string{}, sessions: map[string][]int64{}, missing: map[string]bool{},
		broken: map[string]bool{}, canary: fmt.Sprintf("CANARY%dX", p.Seed)}
	now := time.Now().Truncate(time.Second)
	e.T0 = now.Add(-time.Duration(p.Days) * 24 * time.Hour)
	span := time.Duration(p.Days)*24*time.Hour - 2*time.Hour
	evs := teleportsrv.GenerateAuditEvents(p.Audit, e.T0, span/time.Duration(p.Audit), int64(r.Uint64()>>1))
	require.NoError(t, e.Teleport.AddEvents(evs...))
	for _, ev := range evs {
		x.add(ev.GetID())
		if up, ok := ev.(*apievents.SessionUpload); ok {
			rec := teleportsrv.GenerateRecording(up.SessionID, 4+r.IntN(12), ev.GetTime().Add(-time.Minute))
			require.NoError(t, e.Teleport.AddRecording(up.SessionID, rec...))
			e.Recordings[up.SessionID] = rec
		}
	}
	for _, s := range p.Sessions {
		x.session(t, e, s, e.T0.Add(time.Duration(r.Int64N(int64(span)))))
	}
	x.logins(t, e, p, now)
	x.sized(t, e, p, now, r)
	x.odd(t, e, p, now)
	x.reject(e, p, r)
	return x
}

// recordings lists the session events to expect, once every recording is
// in.
func (x *expect) recordings(e *harness.Env, p Plan) {
	for sid, rec := range e.Recordings {
		x.sessions[sid] = nil
		for _, ev := range rec {
			if p.AllTypes || !defaultSkip[ev.GetType()] {
				x.sessions[sid] = append(x.sessions[sid], ev.GetIndex())
			}
		}
	}
}

// liveEvents adds n events of now, the i-th batch of the trickle, and
// returns n.
func (x *expect) liveEvents(t *testing.T, e *harness.Env, p Plan, i, n int) int {
	if n == 0 {
		return 0
	}
	evs := teleportsrv.GenerateAuditEvents(n, time.Now(), time.Millisecond, int64(p.Seed)<<20+int64(i))
	for j, ev := range evs {
		ev.SetID(fmt.Sprintf("live-%d-%d-%d", p.Seed, i, j))
		x.add(ev.GetID())
	}
	require.NoError(t, e.Teleport.AddEvents(evs...))
	for _, ev := range evs {
		if up, ok := ev.(*apievents.SessionUpload); ok {
			rec := teleportsrv.GenerateRecording(up.SessionID, 4+i%12, ev.GetTime().Add(-time.Minute))
			require.NoError(t, e.Teleport.AddRecording(up.SessionID, rec...))
			e.Recordings[up.SessionID] = rec
		}
	}
	return n
}

func (x *expect) add(ids ...string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.audit = append(x.audit, ids...)
}

// defaultSkip is --skip-session-types' default.
var defaultSkip = map[string]bool{"print": true, "desktop.recording": true}

func (x *expect) session(t *testing.T, e *harness.Env, s Session, at time.Time) {
	sid := harness.SID(s.Name)
	if !s.Missing {
		e.AddSession(s.Name, s.Events, at)
	} else {
		up := &apievents.SessionUpload{
			Metadata:        apievents.Metadata{ID: "upload-" + sid, Type: "session.upload", Code: "T2005I", Time: at, ClusterName: teleportsrv.DefaultClusterName},
			SessionMetadata: apievents.SessionMetadata{SessionID: sid},
		}
		require.NoError(t, e.Teleport.AddEvents(up))
		x.missing[sid] = true
	}
	x.add("upload-" + sid)
	if s.BreakAt >= 0 {
		e.Teleport.BreakRecording(sid, s.BreakAt, codes.Internal)
		x.broken[sid] = true
	}
}

// logins are failed logins of the last minute, some by users with names
// too long to count.
func (x *expect) logins(t *testing.T, e *harness.Env, p Plan, now time.Time) {
	for i, l := range p.Logins {
		for j := range l.Failures {
			id := fmt.Sprintf("login-%d-%d-%d", p.Seed, i, j)
			ev := &apievents.UserLogin{
				Metadata:     apievents.Metadata{ID: id, Type: "user.login", Code: "T1000W", Time: now.Add(time.Duration(i*10+j-50) * time.Second)},
				UserMetadata: apievents.UserMetadata{User: l.User}, Status: apievents.Status{Success: false, Error: "invalid credentials"},
				Method: "local",
			}
			require.NoError(t, e.Teleport.AddEvents(ev))
			x.add(id)
		}
	}
}

// exec is an exec event whose command carries the canary and fills size
// bytes.
func (x *expect) exec(id string, at time.Time, size int) *apievents.Exec {
	cmd := x.canary + " " + strings.Repeat("y", max(0, size-len(x.canary)-1))
	return &apievents.Exec{
		Metadata:        apievents.Metadata{ID: id, Type: "exec", Code: "T3002I", Time: at, ClusterName: teleportsrv.DefaultClusterName},
		UserMetadata:    apievents.UserMetadata{User: "alice", Login: "root"},
		CommandMetadata: apievents.CommandMetadata{Command: cmd, ExitCode: "0"},
	}
}

// sized are events around the receiver's limit; those over it may only be
// dead-lettered.
func (x *expect) sized(t *testing.T, e *harness.Env, p Plan, now time.Time, r *rand.Rand) {
	for i, size := range p.Sizes {
		id := fmt.Sprintf("sized-%d-%d", p.Seed, i)
		at := e.T0.Add(time.Duration(r.Int64N(int64(now.Sub(e.T0) - 3*time.Hour))))
		require.NoError(t, e.Teleport.AddEvents(x.exec(id, at, size)))
		x.add(id)
		if size > p.Limit {
			x.mayDeadLetter[id] = fmt.Sprintf("%d bytes, over the receiver's %d", size, p.Limit)
		}
	}
}

// odd are events with invalid UTF-8, and with a NaN, which no JSON holds.
func (x *expect) odd(t *testing.T, e *harness.Env, p Plan, now time.Time) {
	for i := range p.Odd {
		id := fmt.Sprintf("utf8-%d-%d", p.Seed, i)
		ev := x.exec(id, now.Add(-3*time.Hour+time.Duration(i)*time.Second), 64)
		ev.Command += "\xff\xfe\xc3"
		require.NoError(t, e.Teleport.AddEvents(ev))
		nan := fmt.Sprintf("nan-%d-%d", p.Seed, i)
		at := now.Add(-3*time.Hour + time.Duration(i)*time.Second + time.Millisecond)
		u, err := structpb.NewStruct(map[string]any{"event": "exec", "uid": nan, "time": at.Format(time.RFC3339Nano), "command": x.canary})
		require.NoError(t, err)
		u.Fields["exit_code"] = structpb.NewNumberValue(math.NaN())
		require.NoError(t, e.Teleport.AddUnstructured(&auditlogv1.EventUnstructured{Type: "exec", Id: nan,
			Time: timestamppb.New(at), Unstructured: u}))
		x.add(id, nan)
	}
}

// reject makes the receiver refuse some history events for good.
func (x *expect) reject(e *harness.Env, p Plan, r *rand.Rand) {
	ids := map[string]bool{}
	for range p.Rejected {
		id := x.audit[r.IntN(p.Audit)]
		ids[id] = true
		x.mayDeadLetter[id] = "rejected by the receiver (400)"
	}
	if len(ids) > 0 {
		e.Fluentd.RejectWhere(400, func(m map[string]any) bool { id, _ := m["uid"].(string); return ids[id] })
	}
}

// lateDelay is the most search shows an event late, from the middle of the
// span on.
const lateDelay = 3 * time.Second

// late adds n events of the last seconds during the run: search sees them
// up to 3 s late, export files them in chunks listed after the daemon
// looked.
func (x *expect) late(t *testing.T, e *harness.Env, p Plan, n int) {
	e.Teleport.SetVisibilityDelay(lateDelay)
	now := time.Now()
	for i := range n {
		id := fmt.Sprintf("late-%d-%d", p.Seed, i)
		require.NoError(t, e.Teleport.AddEvents(x.exec(id, now.Add(-time.Duration(i)*100*time.Millisecond), 100)))
		x.add(id)
	}
}
