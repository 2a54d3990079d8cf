package forward

import (
	"maps"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// sameEntries checks that an event goes on the wire as the same bytes
// whether the transport is handed its JSON (what it did before, and what a
// replayed dead letter is) or eventmsgpack's entry of it.
func sameEntries(t *testing.T, evs []*auditlogpb.EventUnstructured) {
	t.Helper()
	now := time.Date(2026, 12, 8, 1, 2, 3, 456789, time.UTC)
	var fromJSON, fromStruct entries
	for i, ev := range evs {
		want, err := fromJSON.encode([][]byte{eventjson.Event(ev)}, now)
		require.NoError(t, err)
		got, err := fromStruct.encode([][]byte{eventmsgpack.Entry(ev)}, now)
		require.NoError(t, err)
		require.Equal(t, want, got, "event %d: %s", i, eventjson.Event(ev))
	}
}

func TestEntriesFromTheStructAreTheJSONsForTeleportEvents(t *testing.T) {
	sameEntries(t, teleportsrv.GenerateUnstructured(2000, 300, time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC), 42))
}

func TestEntriesFromTheStructAreTheJSONsForOddValues(t *testing.T) {
	nums := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, -1e21, 123456789012345678901234.0,
		-1e-300, math.MaxFloat64, math.SmallestNonzeroFloat64, 3.14159, 1 << 53, 1<<53 + 2, -(1 << 53), 1 << 60, 1 << 62,
		1 << 63, -(1 << 63), 1 << 64, 1<<64 + 1<<12, 9.999999999999999e20, 18446744073709549568, 1e-10, 12e-9, 5, -42}
	fields := map[string]*structpb.Value{
		"null": structpb.NewNullValue(), "nokind": {}, "true": structpb.NewBoolValue(true),
		"empty": structpb.NewStructValue(&structpb.Struct{}), "nilst": {Kind: &structpb.Value_StructValue{}},
		"nilli":        {Kind: &structpb.Value_ListValue{}},
		"list":         structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewNumberValue(1), structpb.NewStringValue("<"), structpb.NewNullValue(), nil}}),
		"bad \xff key": structpb.NewStringValue("bad \xff utf8 \xc3\x28 \xe2\x82 \xed\xa0\x80"),
		"ctl":          structpb.NewStringValue("\x00\x01\b\f\n\r\t\x1f\x7f line\u2028para\u2029 🙂"),
	}
	for i, n := range nums {
		fields["n"+string(rune('a'+i))] = structpb.NewNumberValue(n)
	}
	fields["nested"] = structpb.NewStructValue(&structpb.Struct{Fields: maps.Clone(fields)})
	var evs []*auditlogpb.EventUnstructured
	for _, tm := range []*structpb.Value{
		structpb.NewStringValue("2026-11-03T10:00:00.123456789Z"), structpb.NewStringValue("2026-11-03T10:00:00+02:00"),
		nil, structpb.NewStringValue("yesterday"), structpb.NewNumberValue(1), structpb.NewStringValue("2026-11-03T10:00:00\xffZ"),
	} {
		f := maps.Clone(fields)
		if tm != nil {
			f["time"] = tm
		}
		evs = append(evs, &auditlogpb.EventUnstructured{Type: "odd", Id: "x", Unstructured: &structpb.Struct{Fields: f}})
	}
	evs = append(evs, &auditlogpb.EventUnstructured{Type: "empty", Unstructured: &structpb.Struct{}},
		&auditlogpb.EventUnstructured{Type: "none"},
		&auditlogpb.EventUnstructured{Type: "nan", Id: "n", Index: 7, Unstructured: &structpb.Struct{Fields: map[string]*structpb.Value{"x": structpb.NewNumberValue(math.NaN())}}})
	sameEntries(t, evs)
}

func TestEntriesFromTheStructAreTheJSONsForRandomStructs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	evs := make([]*auditlogpb.EventUnstructured, 3000)
	for i := range evs {
		s := teleportsrv.RandomStruct(rng, 3)
		if i%2 == 0 {
			s.Fields["time"] = structpb.NewStringValue(time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC().Format(time.RFC3339Nano))
		}
		evs[i] = &auditlogpb.EventUnstructured{Type: "random", Unstructured: s}
	}
	sameEntries(t, evs)
}
