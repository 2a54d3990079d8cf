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
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/tinylib/msgp/msgp"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/eventwire"
)

// Entry returns ev as a forward entry: an array of its time (an EventTime
// from its "time" field) and its record. An event without a time that
// parses is its record alone, which the transport stamps with the time it
// sends, as it does the JSON of such an event. An event that does not
// encode as JSON (a NaN or infinite number) is eventjson.Event's JSON (an
// object naming it and the error), converted by the transport as any JSON.
func Entry(ev *auditlogpb.EventUnstructured) []byte {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.Reset()
	if err := eventwire.Walk(ev, e); err != nil || e.bad {
		return eventjson.Event(ev)
	}
	if !e.hasTime {
		return bytes.Clone(e.b[headRoom:])
	}
	// The array and the time go in the room left before the record.
	head := msgp.AppendArrayHeader(e.b[:0:headRoom], 2)
	head, _ = msgp.AppendExtension(head, &protocol.EventTime{Time: e.time}) // fails only on a wrong length
	if len(head) != headRoom {
		return append(head, e.b[headRoom:]...) // never: an EventTime is a fixext8
	}
	return bytes.Clone(e.b)
}

// headRoom is the bytes of an entry before its record: a fixarray of two
// and an EventTime (fixext8: 2 + 8 bytes).
const headRoom = 1 + 10

// encoders keep their buffers between events, so encoding an event
// allocates its result only.
var encoders = sync.Pool{New: func() any { return &encoder{b: make([]byte, 0, 4096)} }}

// encoder is an eventwire.Visitor writing the record, and taking the
// time of the event from its "time" field as the forward transport reads
// it from the JSON.
type encoder struct {
	b       []byte
	depth   int
	timeKey bool // the value visited next is the event's "time"
	hasTime bool
	time    time.Time
	bad     bool // a NaN or infinite number
}

func (e *encoder) Reset() {
	e.b, e.depth, e.timeKey, e.hasTime, e.time, e.bad = e.b[:headRoom], 0, false, false, time.Time{}, false
}

func (e *encoder) Object(n int) {
	e.b = msgp.AppendMapHeader(e.b, uint32(n))
	e.depth++
}

func (e *encoder) List(n int) {
	e.b = msgp.AppendArrayHeader(e.b, uint32(n))
	e.depth++
}

func (e *encoder) End() { e.depth-- }

func (e *encoder) Key(k string) {
	e.b = msgp.AppendString(e.b, validUTF8(k))
	e.timeKey = e.depth == 1 && k == "time"
}

func (e *encoder) String(s string) {
	s = validUTF8(s)
	e.b = msgp.AppendString(e.b, s)
	if e.timeKey && e.depth == 1 {
		t, err := time.Parse(time.RFC3339Nano, s)
		e.time, e.hasTime = t, err == nil
	}
}

func (e *encoder) Bool(v bool) { e.b = msgp.AppendBool(e.b, v) }
func (e *encoder) Null()       { e.b = msgp.AppendNil(e.b) }

// number appends f as the forward transport encodes the JSON number
// eventjson writes for it: an integer when that has no fraction or
// exponent and fits 64 bits, a float otherwise.
func (e *encoder) Number(f float64) {
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
