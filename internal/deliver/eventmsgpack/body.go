package eventmsgpack

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tinylib/msgp/msgp"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
)

// Kind is what a body holds.
type Kind int

const (
	// JSON is an event's JSON (eventjson), or any other text: what is not
	// one of the others is taken for JSON, and a transport judges it.
	JSON Kind = iota
	// WithTime is an entry of Entry's: [EventTime, record].
	WithTime
	// RecordOnly is the record of an event with no time.
	RecordOnly
)

// Is says what body holds, by its first byte: an array of two or a map in
// msgpack, neither of which is a byte any JSON text begins with.
func Is(body []byte) Kind {
	if len(body) == 0 {
		return JSON
	}
	switch c := body[0]; {
	case c == 0x92: // fixarray of 2
		return WithTime
	case c&0xf0 == 0x80 || c == 0xde || c == 0xdf: // fixmap, map 16, map 32
		return RecordOnly
	}
	return JSON
}

// maxDepth bounds the nesting JSON follows: Teleport's events nest a few
// levels; a body is ours, but a bound costs nothing.
const maxDepth = 10000

// ToJSON returns the event's JSON for a body: the body itself when it is
// JSON, else the record written as eventjson writes the event (keys in
// the record's order, which is eventjson's; the same strings and numbers),
// but for what the record does not keep: a character eventjson wrote as
// the escape \ufffd (invalid UTF-8 in the event) is the character itself,
// and -0 is 0.
func ToJSON(body []byte) ([]byte, error) {
	rec := body
	switch Is(body) {
	case JSON:
		return body, nil
	case WithTime:
		var err error
		if _, rec, err = msgp.ReadArrayHeaderBytes(body); err == nil {
			rec, err = msgp.Skip(rec)
		}
		if err != nil {
			return nil, fmt.Errorf("forward entry: %w", err)
		}
	}
	out, rest, err := appendJSON(make([]byte, 0, len(rec)*3/2), rec, 0)
	if err != nil {
		return nil, fmt.Errorf("forward record: %w", err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("forward record: %d bytes after it", len(rest))
	}
	return out, nil
}

var errDepth = errors.New("nested too deep")

// appendJSON appends the JSON of the msgpack value at the start of b, and
// returns what follows it.
func appendJSON(out, b []byte, depth int) ([]byte, []byte, error) {
	if depth > maxDepth {
		return nil, nil, errDepth
	}
	var err error
	switch msgp.NextType(b) {
	case msgp.MapType:
		var n uint32
		if n, b, err = msgp.ReadMapHeaderBytes(b); err != nil {
			return nil, nil, err
		}
		out = append(out, '{')
		for i := range n {
			if i > 0 {
				out = append(out, ',')
			}
			var k []byte
			if k, b, err = msgp.ReadMapKeyZC(b); err != nil {
				return nil, nil, err
			}
			out = append(eventjson.AppendString(out, string(k)), ':')
			if out, b, err = appendJSON(out, b, depth+1); err != nil {
				return nil, nil, err
			}
		}
		return append(out, '}'), b, nil
	case msgp.ArrayType:
		var n uint32
		if n, b, err = msgp.ReadArrayHeaderBytes(b); err != nil {
			return nil, nil, err
		}
		out = append(out, '[')
		for i := range n {
			if i > 0 {
				out = append(out, ',')
			}
			if out, b, err = appendJSON(out, b, depth+1); err != nil {
				return nil, nil, err
			}
		}
		return append(out, ']'), b, nil
	}
	return appendScalar(out, b)
}

func appendScalar(out, b []byte) ([]byte, []byte, error) {
	var err error
	switch t := msgp.NextType(b); t {
	case msgp.StrType:
		var s []byte
		if s, b, err = msgp.ReadStringZC(b); err == nil {
			out = eventjson.AppendString(out, string(s))
		}
	case msgp.IntType:
		var n int64
		if n, b, err = msgp.ReadInt64Bytes(b); err == nil {
			out = strconv.AppendInt(out, n, 10)
		}
	case msgp.UintType:
		var n uint64
		if n, b, err = msgp.ReadUint64Bytes(b); err == nil {
			out = strconv.AppendUint(out, n, 10)
		}
	case msgp.Float64Type:
		var f float64
		if f, b, err = msgp.ReadFloat64Bytes(b); err == nil {
			out, err = eventjson.AppendNumber(out, f)
		}
	case msgp.BoolType:
		var v bool
		if v, b, err = msgp.ReadBoolBytes(b); err == nil {
			out = strconv.AppendBool(out, v)
		}
	case msgp.NilType:
		if b, err = msgp.ReadNilBytes(b); err == nil {
			out = append(out, "null"...)
		}
	default:
		err = fmt.Errorf("a %s, which no event holds", t)
	}
	return out, b, err
}
