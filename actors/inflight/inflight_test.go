package inflight

import (
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
)

// fakeCtx records what the tracker sends; the rest of actor.Context is not
// used by it.
type fakeCtx struct {
	actor.Context
	self *actor.PID
	sent []any
}

func (f *fakeCtx) Send(_ *actor.PID, msg any) { f.sent = append(f.sent, msg) }
func (f *fakeCtx) Self() *actor.PID           { return f.self }

func (f *fakeCtx) take() []any {
	out := f.sent
	f.sent = nil
	return out
}

var (
	pool = actor.NewPID("test", "pool")
	tap  = actor.NewPID("test", "tap")
)

func newTracker(window int) *Tracker[int] {
	t := &Tracker[int]{URL: "https://fluentd/test.log", Stream: "audit", Pool: pool, Window: window, Metrics: metrics.New(),
		Filter: Filter{Skip: map[string]bool{"skipped": true, "skipped.upload": true}},
		Taps:   []Tap{{PID: tap, Wants: func(ev *auditlogpb.EventUnstructured) bool { return strings.HasSuffix(ev.Type, "upload") }}}}
	t.Reset(7)
	return t
}

// add reads an event of typ; skipped types are not sent.
func add(t *Tracker[int], pos int, typ string) {
	t.Event(&auditlogpb.EventUnstructured{Id: typ + "-" + string(rune('a'+pos)), Type: typ}, pos, time.Now(), []byte(`{}`))
}

func TestWatermarkMovesOverTheSettledPrefixOnly(t *testing.T) {
	tr, ctx := newTracker(3), &fakeCtx{self: actor.NewPID("test", "reader")}
	add(tr, 1, "exec")
	add(tr, 2, "session.upload")
	add(tr, 3, "skipped") // not sent: settled at once
	add(tr, 4, "exec")
	tr.HandOut(ctx, nil)
	sent := ctx.take()
	// Window 3: items 1-3 go out; 2 to the tap, and 1 and 2 to the pool
	// in one message.
	require.Len(t, sent, 2)
	require.Equal(t, uint64(2), sent[0].(*messages.Observe).Seq)
	ds := sent[1].(*messages.Deliveries).Items
	require.Len(t, ds, 2)
	require.Equal(t, []uint64{1, 2}, []uint64{ds[0].Seq, ds[1].Seq})
	require.Equal(t, 1, tr.Buffered())

	// 2 is sent but not observed: the watermark stops at 1. The pool's
	// answers come one by one, or several in one message; those of
	// another incarnation (another tracker of the reader) are not its.
	require.True(t, tr.Answered(&messages.Answers{Items: []messages.Delivered{{Epoch: 8, Seq: 1}, {Epoch: 7, Seq: 2}}}))
	require.False(t, tr.Answered(&messages.Answers{Items: []messages.Delivered{{Epoch: 8, Seq: 1}}}))
	require.True(t, tr.Answered(&messages.Delivered{Epoch: 7, Seq: 1}))
	last := tr.Advance(nil)
	require.Equal(t, 1, last.Pos)
	require.False(t, tr.Delivered(&messages.Delivered{Epoch: 7, Seq: 1}), "settled already")
	require.False(t, tr.Delivered(&messages.Delivered{Epoch: 6, Seq: 2}), "another incarnation")

	// The tap answers: 2 and 3 settle.
	require.True(t, tr.Observed(&messages.Observed{Epoch: 7, Seq: 2, Tap: tap}))
	var seen []int
	last = tr.Advance(func(it *Item[int]) { seen = append(seen, it.Pos) })
	require.Equal(t, []int{2, 3}, seen)
	require.Equal(t, uint64(3), last.Seq)
	require.Nil(t, tr.Advance(nil))

	// The window opens only as the checkpoint is persisted.
	tr.HandOut(ctx, nil)
	require.Empty(t, ctx.take())
	require.True(t, tr.Persisted(3))
	require.False(t, tr.Persisted(2))
	require.True(t, tr.Settled(), "all handed out is checkpointed (4 is still buffered)")
	tr.HandOut(ctx, nil)
	require.Len(t, ctx.take(), 1)
	require.True(t, tr.Delivered(&messages.Delivered{Epoch: 7, Seq: 4}))
	require.Equal(t, 4, tr.Advance(nil).Pos)
	require.False(t, tr.Settled(), "not checkpointed yet")
	tr.Persisted(4)
	require.True(t, tr.Settled())
}

func TestRestartsOfTapsGetWhatTheyOwe(t *testing.T) {
	tr, ctx := newTracker(10), &fakeCtx{self: actor.NewPID("test", "reader")}
	add(tr, 1, "exec")
	add(tr, 2, "session.upload")
	add(tr, 3, "skipped.upload")
	tr.HandOut(ctx, nil)
	ctx.take()
	require.True(t, tr.Delivered(&messages.Delivered{Epoch: 7, Seq: 1}))

	// 2 and 3 still owe the tap an answer.
	tr.TapStarted(ctx, tap)
	sent := ctx.take()
	require.Len(t, sent, 2)
	require.Equal(t, uint64(2), sent[0].(*messages.Observe).Seq)
	require.Equal(t, uint64(3), sent[1].(*messages.Observe).Seq)
	tr.TapStarted(ctx, actor.NewPID("test", "other"))
	require.Empty(t, ctx.take())
}

func TestDryRunSettlesWithoutThePool(t *testing.T) {
	tr, ctx := newTracker(10), &fakeCtx{self: actor.NewPID("test", "reader")}
	add(tr, 1, "exec")
	add(tr, 2, "exec")
	var logged []int
	tr.HandOut(ctx, func(it *Item[int]) { logged = append(logged, it.Pos) })
	require.Empty(t, ctx.take())
	require.Equal(t, []int{1, 2}, logged)
	require.Equal(t, 2, tr.Advance(nil).Pos)
}

func TestFilterSendsTheTypesAskedForButNotTheSkipped(t *testing.T) {
	all := Filter{}
	require.True(t, all.Sends("exec"))
	require.Nil(t, all.Types())
	f := Filter{Only: map[string]bool{"exec": true, "user.login": true}, Skip: map[string]bool{"user.login": true}}
	require.True(t, f.Sends("exec"))
	require.False(t, f.Sends("user.login"), "fetched for a tap, not sent")
	require.False(t, f.Sends("session.start"))
	require.Equal(t, []string{"exec", "user.login"}, f.Types())
}

func TestEventsAreCountedAndEncoded(t *testing.T) {
	tr, ctx := newTracker(10), &fakeCtx{self: actor.NewPID("test", "reader")}
	st, err := structpb.NewStruct(map[string]any{"event": "exec", "uid": "e1"})
	require.NoError(t, err)
	tr.Event(&auditlogpb.EventUnstructured{Id: "e1", Type: "exec", Unstructured: st}, 1, time.Now(), nil)
	add(tr, 2, "skipped")
	tr.Pass(&auditlogpb.EventUnstructured{Id: "old", Type: "exec"}, 3)
	tr.Mark(4)
	tr.HandOut(ctx, nil)
	sent := ctx.take()
	require.Len(t, sent, 1, "the skipped and passed events go nowhere")
	require.JSONEq(t, `{"event":"exec","uid":"e1"}`, string(sent[0].(*messages.Deliveries).Items[0].Body))
	require.EqualValues(t, 3, testutil.ToFloat64(tr.Metrics.EventsFetched.WithLabelValues("audit")))
	require.EqualValues(t, 1, testutil.ToFloat64(tr.Metrics.EventsSkipped.WithLabelValues("audit", "type")))
	var passed []int
	tr.Delivered(&messages.Delivered{Epoch: 7, Seq: 1})
	tr.Advance(func(it *Item[int]) { passed = append(passed, it.Pos) })
	require.Equal(t, []int{1, 2, 3, 4}, passed)
}
