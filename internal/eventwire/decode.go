package eventwire

import (
	"unicode/utf8"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// decodeFast fills v (one of the messages Codec takes) from b as proto.Unmarshal
// of the diverted bytes would, without its reflection: false when b holds
// anything but the form Teleport's server writes (a wrong wire type, a
// message field sent twice, invalid UTF-8, unknown fields in the time),
// which Codec then leaves to proto.Unmarshal.
func decodeFast(b []byte, v any) bool {
	switch m := v.(type) {
	case *auditlogpb.EventsUnstructured:
		proto.Reset(m)
		return decodePage(b, m)
	case *auditlogpb.ExportEventUnstructured:
		proto.Reset(m)
		return decodeExported(b, m)
	case *auditlogpb.EventUnstructured:
		proto.Reset(m)
		return decodeEvent(b, m)
	}
	return false
}

// decodePage reads a search page: items = 1, last_key = 2.
func decodePage(b []byte, m *auditlogpb.EventsUnstructured) bool {
	unknown, ok := decodeHolder(b, false, func(ev *auditlogpb.EventUnstructured) { m.Items = append(m.Items, ev) }, &m.LastKey)
	if ok && unknown != nil {
		m.ProtoReflect().SetUnknown(unknown)
	}
	return ok
}

// decodeExported reads an export stream's event: event = 1, cursor = 2.
func decodeExported(b []byte, m *auditlogpb.ExportEventUnstructured) bool {
	unknown, ok := decodeHolder(b, true, func(ev *auditlogpb.EventUnstructured) { m.Event = ev }, &m.Cursor)
	if ok && unknown != nil {
		m.ProtoReflect().SetUnknown(unknown)
	}
	return ok
}

// decodeHolder reads a message holding events in field 1, each given to
// add (one at most when once: a message field sent twice is merged), and
// a string in field 2; it returns the other fields' bytes.
func decodeHolder(b []byte, once bool, add func(*auditlogpb.EventUnstructured), str *string) ([]byte, bool) {
	var unknown []byte
	events := 0
	for len(b) > 0 {
		num, typ, v, n := next(b)
		if n < 0 {
			return nil, false
		}
		field := b[:n]
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType && (!once || events == 0):
			ev := &auditlogpb.EventUnstructured{}
			if !decodeEvent(v, ev) {
				return nil, false
			}
			add(ev)
			events++
		case num == 2 && typ == protowire.BytesType && utf8.Valid(v):
			*str = string(v)
		case num == 1 || num == 2:
			return nil, false
		default:
			unknown = append(unknown, field...)
		}
	}
	return unknown, true
}

// decodeEvent reads an event: type = 1, id = 2, time = 3, index = 4, and
// its Struct (unstructured = 5) kept as bytes, under divertedField.
func decodeEvent(b []byte, ev *auditlogpb.EventUnstructured) bool {
	var unknown []byte
	for len(b) > 0 {
		num, typ, v, n := next(b)
		if n < 0 {
			return false
		}
		field := b[:n]
		b = b[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.BytesType && utf8.Valid(v):
			if num == 1 {
				ev.Type = string(v)
			} else {
				ev.Id = string(v)
			}
		case num == 3 && typ == protowire.BytesType:
			if ev.Time == nil {
				ev.Time = &timestamppb.Timestamp{}
			}
			if !decodeTime(v, ev.Time) { // a second one merges, as here
				return false
			}
		case num == 4 && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			ev.Index = int64(x)
		case num == structField && typ == protowire.BytesType:
			unknown = protowire.AppendTag(unknown, divertedField, protowire.BytesType)
			unknown = protowire.AppendBytes(unknown, v)
		case num >= 1 && num <= 5:
			return false
		default:
			unknown = append(unknown, field...)
		}
	}
	if unknown != nil {
		ev.ProtoReflect().SetUnknown(unknown)
	}
	return true
}

// decodeTime reads a Timestamp: seconds = 1, nanos = 2.
func decodeTime(b []byte, t *timestamppb.Timestamp) bool {
	for len(b) > 0 {
		num, typ, v, n := next(b)
		if n < 0 || typ != protowire.VarintType || (num != 1 && num != 2) {
			return false
		}
		b = b[n:]
		x, _ := protowire.ConsumeVarint(v)
		if num == 1 {
			t.Seconds = int64(x)
		} else {
			t.Nanos = int32(x)
		}
	}
	return true
}
