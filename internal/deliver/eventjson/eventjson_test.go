package eventjson_test

import (
	"encoding/json"
	"maps"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// reference is what the daemon did before: the output must not change.
func reference(t testing.TB, s *structpb.Struct) []byte {
	t.Helper()
	b, err := json.Marshal(s.AsMap())
	require.NoError(t, err)
	return b
}

func unstructured(t testing.TB, evs []apievents.AuditEvent) []*structpb.Struct {
	t.Helper()
	out := make([]*structpb.Struct, len(evs))
	for i, ev := range evs {
		u, err := apievents.ToUnstructured(ev)
		require.NoError(t, err)
		out[i] = u.Unstructured
	}
	return out
}

func TestSameBytesAsEncodingJSONForTeleportEvents(t *testing.T) {
	start := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
	evs := teleportsrv.GenerateAuditEvents(2000, start, 1700*time.Millisecond, 42)
	evs = append(evs, teleportsrv.GenerateRecording("4f9c2b8e-0d1a-4c55-9a3e-2b7d5e6f8a90", 300, start)...)
	for i, s := range unstructured(t, evs) {
		got, err := eventjson.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(reference(t, s)), string(got), "event %d", i)
	}
}

func TestSameBytesAsEncodingJSONForOddValues(t *testing.T) {
	strs := []string{"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "\x00\x01\b\f\n\r\t\x1f\x7f",
		"héllo wörld ✓ 日本語 🙂", "line\u2028para\u2029end", "bad \xff utf8 \xc3\x28 \xe2\x82", "\xed\xa0\x80 surrogate"}
	nums := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 123456789012345678901234.0, -1e-300,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 3.14159, 1 << 53, 1<<53 + 1, 1e-10, 12e-9}
	fields := map[string]*structpb.Value{
		"null":   structpb.NewNullValue(),
		"nokind": {},
		"true":   structpb.NewBoolValue(true),
		"false":  structpb.NewBoolValue(false),
		"empty":  structpb.NewStructValue(&structpb.Struct{}),
		"nilst":  {Kind: &structpb.Value_StructValue{}},
		"nilli":  {Kind: &structpb.Value_ListValue{}},
		"list":   structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewStringValue("<"), structpb.NewNullValue(), nil}}),
	}
	for i, s := range strs {
		fields["s"+string(rune('a'+i))] = structpb.NewStringValue(s)
		fields[s] = structpb.NewNumberValue(float64(i)) // odd keys too
	}
	for i, n := range nums {
		fields["n"+string(rune('a'+i))] = structpb.NewNumberValue(n)
	}
	inner := maps.Clone(fields)
	nested := &structpb.Struct{Fields: map[string]*structpb.Value{"z": structpb.NewStructValue(&structpb.Struct{Fields: inner}), "a": structpb.NewBoolValue(true)}}
	fields["nested"] = structpb.NewStructValue(nested)
	s := &structpb.Struct{Fields: fields}
	got, err := eventjson.Marshal(s)
	require.NoError(t, err)
	require.Equal(t, string(reference(t, s)), string(got))
}

func TestRandomStructs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		s := teleportsrv.RandomStruct(rng, 3)
		got, err := eventjson.Marshal(s)
		require.NoError(t, err)
		require.Equal(t, string(reference(t, s)), string(got), "struct %d", i)
	}
}

func TestNaNFails(t *testing.T) {
	_, err := eventjson.Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.NaN())}})
	require.Error(t, err)
	_, err = eventjson.Marshal(&structpb.Struct{Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.Inf(1))}})
	require.Error(t, err)
}

func benchEvents(b *testing.B) []*structpb.Struct {
	start := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	return unstructured(b, teleportsrv.GenerateAuditEvents(1000, start, time.Second, 7))
}

func BenchmarkEncodingJSONAsMap(b *testing.B) {
	evs := benchEvents(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := json.Marshal(evs[i%len(evs)].AsMap()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal(b *testing.B) {
	evs := benchEvents(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := eventjson.Marshal(evs[i%len(evs)]); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEventThatDoesNotEncodeIsKept(t *testing.T) {
	ok := &auditlogpb.EventUnstructured{Type: "exec", Id: "e1", Unstructured: &structpb.Struct{Fields: map[string]*structpb.Value{
		"event": structpb.NewStringValue("exec"), "uid": structpb.NewStringValue("e1")}}}
	require.JSONEq(t, `{"event":"exec","uid":"e1"}`, string(eventjson.Event(ok)))

	bad := &auditlogpb.EventUnstructured{Type: "session.data", Id: "s1-4", Index: 4, Unstructured: &structpb.Struct{
		Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.NaN())}}}
	var got map[string]any
	require.NoError(t, json.Unmarshal(eventjson.Event(bad), &got))
	require.Equal(t, "session.data", got["event"])
	require.Equal(t, "s1-4", got["uid"])
	require.EqualValues(t, 4, got["ei"])
	require.Contains(t, got["encode_error"], "NaN")
}
