// Package eventmsgpack encodes Teleport's unstructured events (a
// google.protobuf.Struct) as the entries of Fluentd's forward protocol,
// [time, record], straight from the Struct: byte for byte what the forward
// transport makes of the event's JSON (eventjson), without writing the JSON
// and parsing it back. The record keeps the JSON's key order (sorted), its
// strings (invalid UTF-8 as U+FFFD) and its numbers as Fluentd's JSON
// parser reads them: integers where the JSON has neither fraction nor
// exponent, floats otherwise.
//
// A body is what the pool hands a transport for one event: the event's
// JSON (eventjson), an entry of Entry's, or a record alone (an event with
// no time to stamp it with). Is tells them apart by their first byte, which
// no JSON text starts with; JSON turns any of them back into the event's
// JSON, for the dead-letter file.
package eventmsgpack

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/tinylib/msgp/msgp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
)

// Entry returns ev as a forward entry: an array of its time (an EventTime
// from its "time" field) and its record. An event without a time that
// parses is its record alone, which the transport stamps with the time it
// sends, as it does the JSON of such an event. An event with a NaN or
// infinite number, which JSON cannot hold, is eventjson.Event's JSON (an
// object naming it and the error), converted by the transport as any JSON.
func Entry(ev *auditlogpb.EventUnstructured) []byte {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.b, e.bad = e.b[:0], false
	s := ev.GetUnstructured()
	if t, ok := eventTime(s); ok {
		e.b = msgp.AppendArrayHeader(e.b, 2)
		e.b, _ = msgp.AppendExtension(e.b, &protocol.EventTime{Time: t}) // fails only on a wrong length
	}
	e.object(s)
	if e.bad {
		return eventjson.Event(ev)
	}
	return bytes.Clone(e.b)
}

// eventTime is the event's "time" field, as the forward transport reads it
// from the JSON.
func eventTime(s *structpb.Struct) (time.Time, bool) {
	v, ok := s.GetFields()["time"].GetKind().(*structpb.Value_StringValue)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, validUTF8(v.StringValue))
	return t, err == nil
}

// encoders keep their buffers between events, so encoding an event
// allocates its result only.
var encoders = sync.Pool{New: func() any { return &encoder{b: make([]byte, 0, 4096)} }}

type encoder struct {
	b    []byte
	keys []string // reused by object, for sorting
	bad  bool     // a NaN or infinite number
}

func (e *encoder) object(s *structpb.Struct) {
	fields := s.GetFields()
	e.b = msgp.AppendMapHeader(e.b, uint32(len(fields)))
	if len(fields) == 0 {
		return
	}
	// Nested objects reuse the tail of the key buffer.
	base := len(e.keys)
	for k := range fields {
		e.keys = append(e.keys, k)
	}
	keys := e.keys[base:]
	slices.SortFunc(keys, strings.Compare)
	for _, k := range keys {
		e.b = msgp.AppendString(e.b, validUTF8(k))
		e.value(fields[k])
	}
	clear(keys)
	e.keys = e.keys[:base]
}

func (e *encoder) value(v *structpb.Value) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		e.b = msgp.AppendString(e.b, validUTF8(k.StringValue))
	case *structpb.Value_NumberValue:
		e.number(k.NumberValue)
	case *structpb.Value_BoolValue:
		e.b = msgp.AppendBool(e.b, k.BoolValue)
	case *structpb.Value_StructValue:
		e.object(k.StructValue)
	case *structpb.Value_ListValue:
		items := k.ListValue.GetValues()
		e.b = msgp.AppendArrayHeader(e.b, uint32(len(items)))
		for _, item := range items {
			e.value(item)
		}
	default: // null, or no kind at all: JSON's null
		e.b = msgp.AppendNil(e.b)
	}
}

// number appends f as the forward transport encodes the JSON number
// eventjson writes for it: an integer when that has no fraction or
// exponent and fits 64 bits, a float otherwise.
func (e *encoder) number(f float64) {
	switch {
	case math.IsInf(f, 0) || math.IsNaN(f):
		e.bad = true
	case f != math.Trunc(f) || math.Abs(f) >= 1e21: // JSON: a fraction or an exponent
		e.b = msgp.AppendFloat64(e.b, f)
	case math.Abs(f) < 1<<53: // exact, and written with all its digits
		e.b = msgp.AppendInt64(e.b, int64(f))
	default:
		// JSON writes the shortest digits that read back as f, padded
		// with zeros: the integer Fluentd reads is those digits, not f.
		var scratch [32]byte
		digits := string(strconv.AppendFloat(scratch[:0], f, 'f', -1, 64))
		if n, err := strconv.ParseInt(digits, 10, 64); err == nil {
			e.b = msgp.AppendInt64(e.b, n)
		} else if u, err := strconv.ParseUint(digits, 10, 64); err == nil {
			e.b = msgp.AppendUint64(e.b, u)
		} else {
			e.b = msgp.AppendFloat64(e.b, f)
		}
	}
}

// validUTF8 is s with each byte that is not part of valid UTF-8 replaced
// by U+FFFD, as encoding/json writes it (one per byte, unlike
// strings.ToValidUTF8).
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
