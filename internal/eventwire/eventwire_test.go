package eventwire_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
	"github.com/fdfwd/teleport-event-handler/internal/eventwire"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// received is msg as the daemon's connection decodes it.
func received[M proto.Message](t testing.TB, msg proto.Message, into M) M {
	t.Helper()
	b, err := proto.Marshal(msg) // map entries in random order, as Teleport's server sends them
	require.NoError(t, err)
	require.NoError(t, eventwire.Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, into))
	return into
}

// validUTF8 replaces what proto.Marshal refuses to send.
func validUTF8(s *structpb.Struct) *structpb.Struct {
	out := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range s.GetFields() {
		out.Fields[strings.ToValidUTF8(k, "?")] = validValue(v)
	}
	return out
}

func validValue(v *structpb.Value) *structpb.Value {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return structpb.NewStringValue(strings.ToValidUTF8(k.StringValue, "?"))
	case *structpb.Value_StructValue:
		return structpb.NewStructValue(validUTF8(k.StructValue))
	case *structpb.Value_ListValue:
		l := &structpb.ListValue{}
		for _, item := range k.ListValue.GetValues() {
			l.Values = append(l.Values, validValue(item))
		}
		return structpb.NewListValue(l)
	}
	return v
}

func corpus(t testing.TB) []*auditlogpb.EventUnstructured {
	start := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
	out := teleportsrv.GenerateUnstructured(1000, 200, start, 42)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		out = append(out, &auditlogpb.EventUnstructured{Type: "random", Id: "r", Index: int64(i),
			Time: timestamppb.New(start), Unstructured: validUTF8(teleportsrv.RandomStruct(rng, 4))})
	}
	return out
}

// sameEvent checks that an event decoded by Codec encodes as the event it
// was, and keeps its other fields.
func sameEvent(t *testing.T, want, got *auditlogpb.EventUnstructured, msg string) {
	t.Helper()
	_, raw := eventwire.Raw(got)
	require.True(t, raw, msg)
	require.Nil(t, got.Unstructured, msg)
	require.Equal(t, want.GetType(), got.GetType(), msg)
	require.Equal(t, want.GetId(), got.GetId(), msg)
	require.Equal(t, want.GetIndex(), got.GetIndex(), msg)
	require.True(t, proto.Equal(want.GetTime(), got.GetTime()), msg)
	require.Equal(t, string(eventjson.Event(want)), string(eventjson.Event(got)), msg)
	require.Equal(t, eventmsgpack.Entry(want), eventmsgpack.Entry(got), msg)
	for k, v := range want.GetUnstructured().GetFields() {
		require.True(t, proto.Equal(v, eventwire.Field(got, k)), "%s: field %q", msg, k)
	}
	require.Nil(t, eventwire.Field(got, "no such field"), msg)
}

func TestEventsFromTheWireEncodeAsTheirStruct(t *testing.T) {
	evs := corpus(t)
	page := received(t, &auditlogpb.EventsUnstructured{Items: evs, LastKey: "next"}, &auditlogpb.EventsUnstructured{})
	require.Equal(t, "next", page.LastKey)
	require.Len(t, page.Items, len(evs))
	for i, ev := range evs {
		sameEvent(t, ev, page.Items[i], "search page")
	}
	for i, ev := range evs[:300] {
		x := received(t, &auditlogpb.ExportEventUnstructured{Event: ev, Cursor: "c"}, &auditlogpb.ExportEventUnstructured{})
		require.Equal(t, "c", x.Cursor)
		sameEvent(t, ev, x.Event, "export")
		sameEvent(t, ev, received(t, ev, &auditlogpb.EventUnstructured{}), "session stream")
		_ = i
	}
}

// Other answers are the proto codec's.
func TestOtherMessagesAreDecodedAsProto(t *testing.T) {
	ts := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC))
	got := received(t, ts, &timestamppb.Timestamp{})
	require.True(t, proto.Equal(ts, got))
	data, err := eventwire.Codec().Marshal(ts)
	require.NoError(t, err)
	require.Equal(t, "proto", eventwire.Codec().Name())
	want, err := proto.Marshal(ts)
	require.NoError(t, err)
	require.Equal(t, want, data.Materialize())
	// Malformed: the proto codec's error.
	bad := mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 0x01})}
	require.Error(t, eventwire.Codec().Unmarshal(bad, &auditlogpb.EventsUnstructured{}))
}

// Struct bytes written by hand, in forms Teleport's server does not write
// (it marshals a Go map): the walker reads them as proto.Unmarshal does,
// or leaves them to it.
func TestUnusualStructBytesAreReadAsProtoReadsThem(t *testing.T) {
	str := func(n protowire.Number, s string) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), []byte(s))
	}
	msg := func(n protowire.Number, parts ...[]byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, n, protowire.BytesType), join(parts...))
	}
	num := func(f float64) []byte {
		return protowire.AppendFixed64(protowire.AppendTag(nil, 2, protowire.Fixed64Type), math.Float64bits(f))
	}
	varint := func(n protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, n, protowire.VarintType), v)
	}
	entry := func(key string, value ...[]byte) []byte { return msg(1, str(1, key), msg(2, value...)) }
	var many []byte
	rng := rand.New(rand.NewPCG(9, 10))
	for i := range 300 {
		many = append(many, entry(string(rune('a'+rng.IntN(40))), num(float64(i)))...) // keys many times over
	}
	nested := str(3, "deep")
	for range 150 {
		nested = msg(5, entry("d", nested))
	}
	cases := map[string][]byte{
		"a key twice, the last counts":           join(entry("a", num(1)), entry("b", str(3, "x")), entry("a", num(2))),
		"keys many times over, the last counts":  many,
		"kinds in a row, the last counts":        join(entry("a", num(1), str(3, "s"), varint(4, 1))),
		"a struct twice, merged":                 join(entry("a", msg(5, entry("x", num(1))), msg(5, entry("y", num(2))))),
		"a list twice, merged":                   join(entry("a", msg(6, msg(1, num(1))), msg(6, msg(1, num(2))))),
		"a value twice in an entry, merged":      join(msg(1, str(1, "a"), msg(2, msg(5, entry("x", num(1)))), msg(2, msg(5, entry("y", num(2)))))),
		"unknown fields everywhere":              join(varint(9, 7), msg(1, str(1, "a"), varint(7, 1), msg(2, num(3), varint(8, 1))), str(10, "zz")),
		"an entry with no value is null":         join(msg(1, str(1, "a"))),
		"an entry with no key is the empty key":  join(msg(1, msg(2, num(5)))),
		"an empty value is null":                 join(entry("a")),
		"null, bool, any enum":                   join(entry("n", varint(1, 3)), entry("b", varint(4, 2)), entry("f", varint(4, 0))),
		"a wrong wire type":                      join(entry("a", varint(2, 1))),
		"nested past the walker's depth":         join(entry("top", nested)),
		"a key of invalid UTF-8":                 join(entry("a\xff", num(1))),
		"a string of invalid UTF-8":              join(entry("a", str(3, "b\xff"))),
		"a NaN":                                  join(entry("a", num(math.NaN()))),
		"truncated":                              join(entry("a", num(1)))[:5],
		"lists of lists and an empty list":       join(entry("l", msg(6, msg(1, msg(6, msg(1, str(3, "x")))), msg(1), msg(1, msg(6))))),
		"a struct, a string, a struct: no merge": join(entry("a", msg(5, entry("x", num(1))), str(3, "s"), msg(5, entry("y", num(2))))),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			ev := protowire.AppendVarint(protowire.AppendTag(str(1, "odd"), 4, protowire.VarintType), 9)
			ev = append(ev, str(2, "id-1")...)
			ev = protowire.AppendBytes(protowire.AppendTag(ev, 5, protowire.BytesType), raw)
			got := &auditlogpb.EventUnstructured{}
			require.NoError(t, eventwire.Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(ev)}, got))
			// What the proto codec would have made of it, where it takes it.
			want := &auditlogpb.EventUnstructured{Type: "odd", Id: "id-1", Index: 9, Unstructured: &structpb.Struct{}}
			if err := proto.Unmarshal(raw, want.Unstructured); err != nil {
				require.Nil(t, eventwire.Field(got, "a"))
				require.Contains(t, string(eventjson.Event(got)), `"encode_error":`)
				require.Equal(t, eventjson.Event(got), eventmsgpack.Entry(got))
				return
			}
			require.Equal(t, string(eventjson.Event(want)), string(eventjson.Event(got)))
			require.Equal(t, eventmsgpack.Entry(want), eventmsgpack.Entry(got))
			for k, v := range want.GetUnstructured().GetFields() {
				require.True(t, proto.Equal(v, eventwire.Field(got, k)), "field %q", k)
			}
		})
	}
}

func join(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func BenchmarkDecodePage(b *testing.B) {
	evs := corpus(b)[:1000]
	raw, err := proto.Marshal(&auditlogpb.EventsUnstructured{Items: evs})
	require.NoError(b, err)
	for _, c := range []struct {
		name  string
		codec interface {
			Unmarshal(mem.BufferSlice, any) error
		}
	}{{"proto", protoCodec{}}, {"eventwire", eventwire.Codec()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var page auditlogpb.EventsUnstructured
				require.NoError(b, c.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &page))
				for _, ev := range page.Items {
					eventmsgpack.Entry(ev)
				}
			}
		})
	}
}

type protoCodec struct{}

func (protoCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

// BenchmarkEntryFromBytes is the encoding alone: events decoded by Codec,
// encoded as forward entries.
func BenchmarkEntryFromBytes(b *testing.B) {
	evs := corpus(b)[:1000]
	page := received(b, &auditlogpb.EventsUnstructured{Items: evs}, &auditlogpb.EventsUnstructured{})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		eventmsgpack.Entry(page.Items[i%len(page.Items)])
	}
}

// Events written by hand, in forms Teleport's server does not write: the
// codec gives what proto.Unmarshal gives (or its error).
func TestUnusualEventBytesAreReadAsProtoReadsThem(t *testing.T) {
	tag := func(n protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, n, typ) }
	str := func(n protowire.Number, s string) []byte {
		return protowire.AppendString(tag(n, protowire.BytesType), s)
	}
	msg := func(n protowire.Number, parts ...[]byte) []byte {
		return protowire.AppendBytes(tag(n, protowire.BytesType), join(parts...))
	}
	varint := func(n protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(n, protowire.VarintType), v)
	}
	fields := msg(5, msg(1, str(1, "k"), msg(2, str(3, "v"))))
	ts := msg(3, varint(1, 1700000000), varint(2, 5))
	events := map[string][]byte{
		"plain":                         join(str(1, "t"), str(2, "id"), ts, varint(4, 3), fields),
		"fields before the rest":        join(fields, varint(4, 3), str(2, "id"), str(1, "t")),
		"fields twice, merged":          join(str(1, "t"), fields, msg(5, msg(1, str(1, "j"), msg(2, varint(4, 1))))),
		"the time twice, merged":        join(str(1, "t"), ts, msg(3, varint(2, 9)), fields),
		"a type twice, the last counts": join(str(1, "t"), str(1, "u"), fields),
		"unknown fields kept":           join(str(1, "t"), varint(9, 1), fields, str(1000, "x")),
		"no fields":                     join(str(1, "t"), str(2, "id")),
		"an index of wrong wire type":   join(str(1, "t"), str(4, "x"), fields),
		"a type of invalid UTF-8":       join(str(1, "t\xff"), fields),
		"a time with an unknown field":  join(str(1, "t"), msg(3, varint(1, 5), varint(3, 1)), fields),
		"a negative index and nanos":    join(str(1, "t"), msg(3, varint(2, uint64(1<<64-1))), varint(4, uint64(1<<64-2)), fields),
		"truncated":                     join(str(1, "t"), fields)[:6],
	}
	for name, ev := range events {
		t.Run(name, func(t *testing.T) {
			want := &auditlogpb.EventUnstructured{}
			wantErr := proto.Unmarshal(ev, want)
			page := join(msg(1, ev), msg(1, ev), str(2, "key"), varint(7, 1))
			exported := join(msg(1, ev), str(2, "cursor"))
			for _, c := range []struct {
				bytes []byte
				into  proto.Message
				event func() *auditlogpb.EventUnstructured
			}{
				{ev, &auditlogpb.EventUnstructured{}, nil},
				{page, &auditlogpb.EventsUnstructured{}, nil},
				{exported, &auditlogpb.ExportEventUnstructured{}, nil},
			} {
				err := eventwire.Codec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(c.bytes)}, c.into)
				if wantErr != nil {
					require.Error(t, err)
					continue
				}
				require.NoError(t, err)
				var got []*auditlogpb.EventUnstructured
				switch m := c.into.(type) {
				case *auditlogpb.EventUnstructured:
					got = append(got, m)
				case *auditlogpb.EventsUnstructured:
					require.Equal(t, "key", m.LastKey)
					require.NotEmpty(t, m.ProtoReflect().GetUnknown(), "the page's unknown field is kept")
					got = m.Items
				case *auditlogpb.ExportEventUnstructured:
					require.Equal(t, "cursor", m.Cursor)
					got = append(got, m.Event)
				}
				for _, g := range got {
					require.Equal(t, want.Type, g.Type)
					require.Equal(t, want.Id, g.Id)
					require.Equal(t, want.Index, g.Index)
					require.True(t, proto.Equal(want.Time, g.Time), "%v %v", want.Time, g.Time)
					require.Equal(t, string(eventjson.Event(want)), string(eventjson.Event(g)))
					require.Equal(t, eventmsgpack.Entry(want), eventmsgpack.Entry(g))
				}
			}
		})
	}
}
