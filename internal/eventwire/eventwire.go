// Package eventwire keeps Teleport's unstructured events close to the
// wire. An event's fields arrive as a google.protobuf.Struct, and building
// it (a map of Value messages per object) took 9 µs and a hundred
// allocations for an event of 500 bytes, more than anything else the
// daemon does with it. Codec, the gRPC codec of the daemon's connection to
// Teleport, leaves the Struct's bytes unparsed in the event (Raw), and
// Walk visits its fields straight from them, in the order and with the
// values that encoding the Struct would give: the encoders of the JSON
// (eventjson) and of forward's records (eventmsgpack) are visitors.
//
// Nothing but this package reads an event's Unstructured field (a test in
// tests/architecture holds it so): an event of Codec has none, and Field
// decodes one field for the few that need its value (the lock policy, the
// session manager).
package eventwire

import (
	"fmt"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// divertedField is where Codec moves an event's Struct (field 5 of
// EventUnstructured): a number in the range protobuf reserves for its
// own use (19000 to 19999), which no message may define, so that
// proto.Unmarshal keeps the field as unknown bytes, unparsed.
const divertedField protowire.Number = 19999

// Raw returns the bytes of the event's Struct when the event came through
// Codec, and false when it has its Struct decoded (or none at all).
func Raw(ev *auditlogpb.EventUnstructured) ([]byte, bool) {
	unknown := ev.ProtoReflect().GetUnknown()
	var raw []byte
	found := false
	for len(unknown) > 0 {
		num, typ, n := protowire.ConsumeTag(unknown)
		if n < 0 {
			break
		}
		m := protowire.ConsumeFieldValue(num, typ, unknown[n:])
		if m < 0 {
			break
		}
		if num == divertedField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(unknown[n:])
			// A field sent twice is merged, as proto.Unmarshal merges
			// a message field: the bytes of both, one after the other.
			if found {
				raw = append(append([]byte(nil), raw...), v...)
			} else {
				raw = v
			}
			found = true
		}
		unknown = unknown[n+m:]
	}
	return raw, found
}

// Field returns the value of the event's top-level field name, nil when
// it has none: from its Struct, or decoded alone from its bytes (a new
// one at each call: events are shared between actors and are never
// written to). For the few that need a field's value (the lock policy,
// the session manager).
func Field(ev *auditlogpb.EventUnstructured, name string) *structpb.Value {
	raw, ok := Raw(ev)
	if !ok {
		return ev.GetUnstructured().GetFields()[name]
	}
	var value []byte
	found := false
	err := each(raw, func(num protowire.Number, typ protowire.Type, entry []byte) error {
		if num != 1 {
			return nil
		}
		if typ != protowire.BytesType {
			return errUnusual
		}
		f, err := mapEntry(entry)
		if err == nil && f.key == name {
			value, found = f.value, true // the last one counts
		}
		return err
	})
	if err != nil { // proto.Unmarshal decides
		s, err := decode(raw)
		if err != nil {
			return nil
		}
		return s.GetFields()[name]
	}
	if !found {
		return nil
	}
	v := &structpb.Value{}
	if proto.Unmarshal(value, v) != nil {
		return nil
	}
	return v
}

func decode(raw []byte) (*structpb.Struct, error) {
	s := &structpb.Struct{}
	if err := proto.Unmarshal(raw, s); err != nil {
		return nil, fmt.Errorf("the event's fields do not decode: %w", err)
	}
	return s, nil
}
