// Package eventjson encodes Teleport's unstructured events (a
// google.protobuf.Struct) as JSON, byte for byte as
// json.Marshal(s.AsMap()) does, without building the map: keys sorted,
// the same string escaping and the same number format. It is the daemon's
// hottest path (every event is encoded once), and the round trip through
// map[string]any and reflection costs several times more.
package eventjson

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/protobuf/types/known/structpb"
)

// Marshal returns the JSON of s, in a slice of its own exact size. Like
// json.Marshal, it fails only on a NaN or infinite number.
func Marshal(s *structpb.Struct) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.b, e.err = e.b[:0], nil
	e.object(s)
	if e.err != nil {
		return nil, e.err
	}
	return bytes.Clone(e.b), nil
}

// encoders keep their buffers between events, so encoding an event
// allocates its result only.
var encoders = sync.Pool{New: func() any { return &encoder{b: make([]byte, 0, 4096)} }}

type encoder struct {
	b    []byte
	keys []string // reused by object, for sorting
	err  error
}

func (e *encoder) object(s *structpb.Struct) {
	fields := s.GetFields()
	if len(fields) == 0 {
		e.b = append(e.b, '{', '}')
		return
	}
	// Nested objects reuse the tail of the key buffer.
	base := len(e.keys)
	for k := range fields {
		e.keys = append(e.keys, k)
	}
	keys := e.keys[base:]
	slices.SortFunc(keys, strings.Compare)
	e.b = append(e.b, '{')
	for i, k := range keys {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = AppendString(e.b, k)
		e.b = append(e.b, ':')
		e.value(fields[k])
	}
	e.b = append(e.b, '}')
	clear(keys)
	e.keys = e.keys[:base]
}

func (e *encoder) value(v *structpb.Value) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		e.b = AppendString(e.b, k.StringValue)
	case *structpb.Value_NumberValue:
		e.number(k.NumberValue)
	case *structpb.Value_BoolValue:
		e.b = strconv.AppendBool(e.b, k.BoolValue)
	case *structpb.Value_StructValue:
		e.object(k.StructValue)
	case *structpb.Value_ListValue:
		e.b = append(e.b, '[')
		for i, item := range k.ListValue.GetValues() {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.value(item)
		}
		e.b = append(e.b, ']')
	default: // null, or no kind at all: AsInterface gives nil
		e.b = append(e.b, "null"...)
	}
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
// audit or a session event). An event that does not encode (only a NaN or
// infinite number can do that) is kept rather than dropped: it is sent as
// an object naming its type, ID and index, and the error, so that the
// receiver sees it and the stream goes on.
func Event(ev *auditlogpb.EventUnstructured) []byte {
	body, err := Marshal(ev.GetUnstructured())
	if err == nil {
		return body
	}
	b := append([]byte(`{"event":`), AppendString(nil, ev.GetType())...)
	b = append(append(b, `,"uid":`...), AppendString(nil, ev.GetId())...)
	b = strconv.AppendInt(append(b, `,"ei":`...), ev.GetIndex(), 10)
	b = append(append(b, `,"encode_error":`...), AppendString(nil, err.Error())...)
	return append(b, '}')
}
