package eventwire

import (
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec that Codec wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Codec returns the gRPC codec for the connection to Teleport: the proto
// codec, except that the answers that carry events (a search page, an
// export stream's event, a session stream's event) are decoded with each
// event's Struct left as its bytes (Raw). It is used with
// grpc.ForceCodecV2, for the daemon's own connection only.
func Codec() encoding.CodecV2 {
	return codec{proto: encoding.GetCodecV2("proto")}
}

type codec struct{ proto encoding.CodecV2 }

func (c codec) Name() string                           { return c.proto.Name() }
func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	var divert func(dst, src []byte) ([]byte, bool)
	switch v.(type) {
	case *auditlogpb.EventsUnstructured: // items = 1
		divert = divertEvents
	case *auditlogpb.ExportEventUnstructured: // event = 1
		divert = divertEvents
	case *auditlogpb.EventUnstructured:
		divert = divertEvent
	default:
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	src := buf.ReadOnlyData()
	if decodeFast(src, v) {
		return nil
	}
	out, ok := divert(make([]byte, 0, len(src)+len(src)/64), src)
	if !ok {
		out = src // malformed: proto.Unmarshal says how
	}
	return proto.Unmarshal(out, v.(proto.Message))
}

// structField is EventUnstructured's unstructured = 5, and eventsField
// the events of an EventsUnstructured (items = 1) or of an
// ExportEventUnstructured (event = 1).
const (
	structField protowire.Number = 5
	eventsField protowire.Number = 1
)

// divertEvents appends msg with the events of its field 1 diverted; false
// when msg is malformed.
func divertEvents(dst, msg []byte) ([]byte, bool) {
	var ev []byte
	return eachField(dst, msg, func(dst []byte, num protowire.Number, typ protowire.Type, field, value []byte) ([]byte, bool) {
		if num != eventsField || typ != protowire.BytesType {
			return append(dst, field...), true
		}
		var ok bool
		if ev, ok = divertEvent(ev[:0], value); !ok {
			return nil, false
		}
		dst = protowire.AppendTag(dst, num, typ)
		return protowire.AppendBytes(dst, ev), true
	})
}

// divertEvent appends the event ev with its Struct moved to divertedField;
// false when ev is malformed.
func divertEvent(dst, ev []byte) ([]byte, bool) {
	return eachField(dst, ev, func(dst []byte, num protowire.Number, typ protowire.Type, field, value []byte) ([]byte, bool) {
		if num != structField || typ != protowire.BytesType {
			return append(dst, field...), true
		}
		dst = protowire.AppendTag(dst, divertedField, typ)
		return protowire.AppendBytes(dst, value), true
	})
}

// eachField appends what each field of msg becomes; value is a bytes
// field's content. False when msg is malformed, or each says so.
func eachField(dst, msg []byte, each func(dst []byte, num protowire.Number, typ protowire.Type, field, value []byte) ([]byte, bool)) ([]byte, bool) {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return nil, false
		}
		var value []byte
		if typ == protowire.BytesType {
			value, _ = protowire.ConsumeBytes(msg[n:])
		}
		var ok bool
		if dst, ok = each(dst, num, typ, msg[:n+m], value); !ok {
			return nil, false
		}
		msg = msg[n+m:]
	}
	return dst, true
}
