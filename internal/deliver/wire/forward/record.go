package forward

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/fluent-forward-go/fluent/protocol"
	"github.com/tinylib/msgp/msgp"
	"github.com/valyala/fastjson"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
)

// entries encodes events as the entry stream of a PackedForward message:
// for each, [time, record], the time an EventTime (seconds and
// nanoseconds) from the event's "time" field and the record the event's
// fields as a msgpack map, so that Fluentd stores what in_http with the
// README's <parse> section stores: strings as str, integers as integers,
// objects and arrays kept, the time field kept too. An event is its JSON
// object, or what eventmsgpack made of it: an entry, taken as it is, or a
// record without a time.
type entries struct {
	parser fastjson.Parser
	buf    []byte
}

// encode returns the entry stream of events, valid until the next call;
// an error names the event that is not a JSON object.
func (e *entries) encode(events [][]byte, now time.Time) ([]byte, error) {
	b := e.buf[:0]
	for i, ev := range events {
		var err error
		switch eventmsgpack.Is(ev) {
		case eventmsgpack.WithTime:
			b = append(b, ev...)
		case eventmsgpack.RecordOnly:
			b = msgp.AppendArrayHeader(b, 2)
			if b, err = msgp.AppendExtension(b, &protocol.EventTime{Time: now}); err != nil {
				return nil, err
			}
			b = append(b, ev...)
		default:
			if b, err = e.fromJSON(b, ev, now); err != nil {
				return nil, fmt.Errorf("event %d of the batch %w", i+1, err)
			}
		}
	}
	e.buf = b
	return b, nil
}

// fromJSON appends the entry of an event's JSON.
func (e *entries) fromJSON(b, ev []byte, now time.Time) ([]byte, error) {
	v, err := e.parser.ParseBytes(ev)
	if err != nil {
		return nil, fmt.Errorf("is not JSON: %w", err)
	}
	obj, err := v.Object()
	if err != nil {
		return nil, errors.New("is not a JSON object")
	}
	b = msgp.AppendArrayHeader(b, 2)
	if b, err = msgp.AppendExtension(b, &protocol.EventTime{Time: eventTime(obj, now)}); err != nil {
		return nil, err
	}
	return appendValue(b, v), nil
}

// eventTime is the event's "time" field, or now when it has none that
// parses (in_http then also stamps the record with its arrival).
func eventTime(obj *fastjson.Object, now time.Time) time.Time {
	if s := obj.Get("time").GetStringBytes(); s != nil {
		if t, err := time.Parse(time.RFC3339Nano, string(s)); err == nil {
			return t
		}
	}
	return now
}

// appendValue appends v as msgpack. Numbers written without a fraction or
// exponent are integers, as Fluentd's JSON parser reads them.
func appendValue(b []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeObject:
		obj, _ := v.Object()
		b = msgp.AppendMapHeader(b, uint32(obj.Len()))
		obj.Visit(func(key []byte, val *fastjson.Value) {
			b = msgp.AppendStringFromBytes(b, key)
			b = appendValue(b, val)
		})
	case fastjson.TypeArray:
		items, _ := v.Array()
		b = msgp.AppendArrayHeader(b, uint32(len(items)))
		for _, item := range items {
			b = appendValue(b, item)
		}
	case fastjson.TypeString:
		b = msgp.AppendStringFromBytes(b, v.GetStringBytes())
	case fastjson.TypeNumber:
		b = appendNumber(b, v)
	case fastjson.TypeTrue:
		b = msgp.AppendBool(b, true)
	case fastjson.TypeFalse:
		b = msgp.AppendBool(b, false)
	default:
		b = msgp.AppendNil(b)
	}
	return b
}

func appendNumber(b []byte, v *fastjson.Value) []byte {
	raw := v.MarshalTo(nil)
	if !bytes.ContainsAny(raw, ".eE") {
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return msgp.AppendInt64(b, n)
		}
		if n, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
			return msgp.AppendUint64(b, n)
		}
	}
	// fastjson's own float parsing is not correctly rounded (9.99e-7
	// reads one unit in the last place off): strconv's is.
	// Out of range, it is ±Inf, as fastjson's.
	f, _ := strconv.ParseFloat(string(raw), 64)
	return msgp.AppendFloat64(b, f)
}
