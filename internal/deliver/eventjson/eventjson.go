// Package eventjson encodes Teleport's unstructured events (a
// google.protobuf.Struct, or its bytes: eventwire) as JSON, byte for byte
// as json.Marshal(s.AsMap()) does, without building the map: keys sorted,
// the same string escaping and the same number format. It is the daemon's
// hottest path for in_http (every event is encoded once), and the round
// trip through map[string]any and reflection costs several times more.
package eventjson

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/internal/eventwire"
)

// Marshal returns the JSON of s, in a slice of its own exact size. Like
// json.Marshal, it fails only on a NaN or infinite number.
func Marshal(s *structpb.Struct) ([]byte, error) {
	return marshal(&auditlogpb.EventUnstructured{Unstructured: s})
}

// marshal returns the JSON of the event's fields; it fails on a NaN or
// infinite number, and on bytes that do not decode.
func marshal(ev *auditlogpb.EventUnstructured) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.Reset()
	if err := eventwire.Walk(ev, e); err != nil {
		return nil, err
	}
	if e.err != nil {
		return nil, e.err
	}
	return bytes.Clone(e.b), nil
}

// encoders keep their buffers between events, so encoding an event
// allocates its result only.
var encoders = sync.Pool{New: func() any { return &encoder{b: make([]byte, 0, 4096)} }}

// encoder is an eventwire.Visitor writing JSON.
type encoder struct {
	b []byte
	// open has, for each object or list begun, whether it is a list and
	// whether it holds an element yet (a comma before the next).
	open     []container
	afterKey bool // a value follows its key: no comma
	err      error
}

type container struct{ list, some bool }

func (e *encoder) Reset() {
	e.b, e.open, e.afterKey, e.err = e.b[:0], e.open[:0], false, nil
}

// value starts a value: after a comma, unless it is the first element or
// follows its key.
func (e *encoder) value() {
	if e.afterKey {
		e.afterKey = false
		return
	}
	if n := len(e.open); n > 0 {
		if e.open[n-1].some {
			e.b = append(e.b, ',')
		}
		e.open[n-1].some = true
	}
}

func (e *encoder) Object(int) {
	e.value()
	e.b = append(e.b, '{')
	e.open = append(e.open, container{})
}

func (e *encoder) List(int) {
	e.value()
	e.b = append(e.b, '[')
	e.open = append(e.open, container{list: true})
}

func (e *encoder) End() {
	c := e.open[len(e.open)-1]
	e.open = e.open[:len(e.open)-1]
	if c.list {
		e.b = append(e.b, ']')
	} else {
		e.b = append(e.b, '}')
	}
}

func (e *encoder) Key(k string) {
	e.value()
	e.b = append(AppendString(e.b, k), ':')
	e.afterKey = true
}

func (e *encoder) String(s string) {
	e.value()
	e.b = AppendString(e.b, s)
}

func (e *encoder) Bool(v bool) {
	e.value()
	e.b = strconv.AppendBool(e.b, v)
}

func (e *encoder) Null() {
	e.value()
	e.b = append(e.b, "null"...)
}

func (e *encoder) Number(f float64) {
	e.value()
	e.number(f)
}

// number formats f as encoding/json does (ES6 number to string).
func (e *encoder) number(f float64) {
	var err error
	if e.b, err = AppendNumber(e.b, f); err != nil && e.err == nil {
		e.err = err
	}
}

// AppendNumber appends f as encoding/json formats a float64 (ES6 number to
// string). A NaN or infinite number, which JSON has no form for, appends 0
// and fails as json.Marshal does.
func AppendNumber(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, '0'), fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hex = "0123456789abcdef"

// safe marks the ASCII bytes written as they are: encoding/json escapes
// control characters, the quote and backslash, and <, > and & (HTML).
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// AppendString quotes s as encoding/json does: invalid UTF-8 becomes
// U+FFFD, and U+2028 and U+2029 are escaped.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Event returns the JSON that Fluentd receives for a Teleport event (an
// audit or a session event). An event that does not encode (a NaN or
// infinite number, or fields whose bytes do not decode, which Teleport does
// not send) is kept rather than dropped: it is sent as
// an object naming its type, ID and index, and the error, so that the
// receiver sees it and the stream goes on.
func Event(ev *auditlogpb.EventUnstructured) []byte {
	body, err := marshal(ev)
	if err == nil {
		return body
	}
	b := append([]byte(`{"event":`), AppendString(nil, ev.GetType())...)
	b = append(append(b, `,"uid":`...), AppendString(nil, ev.GetId())...)
	b = strconv.AppendInt(append(b, `,"ei":`...), ev.GetIndex(), 10)
	b = append(append(b, `,"encode_error":`...), AppendString(nil, err.Error())...)
	return append(b, '}')
}
