package eventwire

import (
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"
)

// Visitor is what Walk hands an event's fields to, as an encoder of
// json.Marshal(s.AsMap()) meets them: objects with their keys sorted,
// lists, strings, numbers, booleans and nulls (a Value of no kind, or none,
// is null). The strings are valid during the call only.
type Visitor interface {
	Object(n int) // then n times Key and a value, then End
	Key(k string)
	List(n int) // then n values, then End
	End()
	String(s string)
	Number(f float64)
	Bool(b bool)
	Null()
	// Reset drops what was visited: Walk starts again, from the Struct
	// decoded, when the bytes are not in the form it reads directly.
	Reset()
}

// Walk visits the event's fields: from its bytes when it came through
// Codec, else from its Struct. It fails only when the bytes do not decode
// (as proto.Unmarshal would have failed on them).
func Walk(ev *auditlogpb.EventUnstructured, v Visitor) error {
	raw, ok := Raw(ev)
	if !ok {
		walkStruct(ev.GetUnstructured(), v)
		return nil
	}
	w := walkers.Get().(*walker)
	defer walkers.Put(w)
	w.v, w.fields, w.order = v, w.fields[:0], w.order[:0]
	err := w.object(raw, 0)
	clear(w.fields[:cap(w.fields)])
	w.v = nil
	if err == nil {
		return nil
	}
	// Anything but the form Teleport's server writes (a repeated message
	// field to merge, a wrong wire type, invalid UTF-8, nesting past
	// maxDepth): proto.Unmarshal decides.
	v.Reset()
	s, err := decode(raw)
	if err != nil {
		return err
	}
	walkStruct(s, v)
	return nil
}

func walkStruct(s *structpb.Struct, v Visitor) {
	fields := s.GetFields()
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	v.Object(len(keys))
	for _, k := range keys {
		v.Key(k)
		walkValue(fields[k], v)
	}
	v.End()
}

func walkValue(val *structpb.Value, v Visitor) {
	switch k := val.GetKind().(type) {
	case *structpb.Value_StringValue:
		v.String(k.StringValue)
	case *structpb.Value_NumberValue:
		v.Number(k.NumberValue)
	case *structpb.Value_BoolValue:
		v.Bool(k.BoolValue)
	case *structpb.Value_StructValue:
		walkStruct(k.StructValue, v)
	case *structpb.Value_ListValue:
		items := k.ListValue.GetValues()
		v.List(len(items))
		for _, item := range items {
			walkValue(item, v)
		}
		v.End()
	default: // null, or no kind at all: AsInterface gives nil
		v.Null()
	}
}

// errUnusual is bytes not in the form the walker reads: Walk hands them
// to proto.Unmarshal.
var errUnusual = errors.New("not in the form Teleport writes")

// maxDepth bounds the nesting the walker follows (Teleport's events nest
// a few levels); proto.Unmarshal takes what is deeper.
const maxDepth = 100

var walkers = sync.Pool{New: func() any { return &walker{} }}

// walker reads a Struct's bytes. fields and order are stacks of the
// objects being visited: each object sorts its own at the top.
type walker struct {
	v      Visitor
	fields []field
	order  []sortKey
}

type field struct {
	key   string // in the bytes
	value []byte // a Value message
}

// sortKey orders fields cheaply: by the first 8 bytes of the key, then
// by the whole key, then by position (of a key sent twice, the last one
// counts, as in the map proto.Unmarshal builds).
type sortKey struct {
	prefix uint64
	i      int32 // into fields
}

func prefixOf(k string) uint64 {
	var p uint64
	for i := range 8 {
		p <<= 8
		if i < len(k) {
			p |= uint64(k[i])
		}
	}
	return p
}

// Field numbers of Struct (fields = 1, map entries of key = 1 and
// value = 2), of ListValue (values = 1) and of Value's kinds.
const (
	kindNull   protowire.Number = 1
	kindNumber protowire.Number = 2
	kindString protowire.Number = 3
	kindBool   protowire.Number = 4
	kindStruct protowire.Number = 5
	kindList   protowire.Number = 6
)

func (w *walker) object(b []byte, depth int) error {
	if depth > maxDepth {
		return errUnusual
	}
	base, obase := len(w.fields), len(w.order)
	defer func() { w.fields, w.order = w.fields[:base], w.order[:obase] }()
	for len(b) > 0 {
		num, typ, entry, n := next(b)
		if n < 0 {
			return errUnusual
		}
		b = b[n:]
		if num != 1 {
			continue // unknown: proto.Unmarshal skips it too
		}
		if typ != protowire.BytesType {
			return errUnusual
		}
		f, err := mapEntry(entry)
		if err != nil {
			return err
		}
		w.order = append(w.order, sortKey{prefix: prefixOf(f.key), i: int32(len(w.fields))})
		w.fields = append(w.fields, f)
	}
	fields, order := w.fields, w.order[obase:]
	slices.SortFunc(order, func(a, b sortKey) int {
		if a.prefix != b.prefix {
			if a.prefix < b.prefix {
				return -1
			}
			return 1
		}
		if c := strings.Compare(fields[a.i].key, fields[b.i].key); c != 0 {
			return c
		}
		return int(a.i - b.i)
	})
	n := len(order)
	for i := 1; i < len(order); i++ {
		if fields[order[i].i].key == fields[order[i-1].i].key {
			n--
		}
	}
	w.v.Object(n)
	for i, o := range order {
		f := w.fields[o.i]
		if i+1 < len(order) && w.fields[order[i+1].i].key == f.key {
			continue
		}
		w.v.Key(f.key)
		if err := w.value(f.value, depth); err != nil {
			return err
		}
	}
	w.v.End()
	return nil
}

// mapEntry reads one key and value of a Struct; a missing value is an
// empty Value (null).
func mapEntry(b []byte) (field, error) {
	var f field
	seen := false
	for len(b) > 0 {
		num, typ, v, n := next(b)
		if n < 0 {
			return f, errUnusual
		}
		b = b[n:]
		switch {
		case num != 1 && num != 2:
		case typ != protowire.BytesType || (num == 2 && seen): // a value twice is merged
			return f, errUnusual
		case num == 1:
			if !utf8.Valid(v) {
				return f, errUnusual
			}
			f.key = unsafe.String(unsafe.SliceData(v), len(v))
		default:
			f.value, seen = v, true
		}
	}
	return f, nil
}

// value visits a Value message: of its kinds, the last one sent counts.
func (w *walker) value(b []byte, depth int) error {
	kind, payload, bits, err := valueKind(b)
	if err != nil {
		return err
	}
	switch kind {
	case kindNumber:
		w.v.Number(math.Float64frombits(bits))
	case kindString:
		if !utf8.Valid(payload) {
			return errUnusual
		}
		w.v.String(unsafe.String(unsafe.SliceData(payload), len(payload)))
	case kindBool:
		w.v.Bool(bits != 0)
	case kindStruct:
		return w.object(payload, depth+1)
	case kindList:
		return w.list(payload, depth+1)
	default:
		w.v.Null()
	}
	return nil
}

// valueKind reads a Value message's kind: a bytes kind's content, or a
// scalar's bits.
func valueKind(b []byte) (kind protowire.Number, payload []byte, bits uint64, err error) {
	last := protowire.Number(0)
	for len(b) > 0 {
		num, typ, v, n := next(b)
		if n < 0 {
			return 0, nil, 0, errUnusual
		}
		b = b[n:]
		want := protowire.VarintType
		switch num {
		case kindNumber:
			want = protowire.Fixed64Type
		case kindString, kindStruct, kindList:
			want = protowire.BytesType
		case kindNull, kindBool:
		default:
			continue
		}
		if typ != want || ((num == kindStruct || num == kindList) && last == num) {
			return 0, nil, 0, errUnusual // a message kind twice in a row is merged
		}
		kind, last = num, num
		if typ == protowire.BytesType {
			payload = v
		} else {
			bits = scalar(v, typ)
		}
	}
	return kind, payload, bits, nil
}

func (w *walker) list(b []byte, depth int) error {
	if depth > maxDepth {
		return errUnusual
	}
	count := 0
	for rest := b; len(rest) > 0; {
		num, typ, _, n := next(rest)
		if n < 0 || num == 1 && typ != protowire.BytesType {
			return errUnusual
		}
		rest = rest[n:]
		if num == 1 {
			count++
		}
	}
	w.v.List(count)
	for len(b) > 0 {
		num, _, item, n := next(b)
		b = b[n:]
		if num != 1 {
			continue
		}
		if err := w.value(item, depth); err != nil {
			return err
		}
	}
	w.v.End()
	return nil
}

// scalar is the value of a varint or fixed64 field, v its bytes.
func scalar(v []byte, typ protowire.Type) uint64 {
	if typ == protowire.Fixed64Type {
		x, _ := protowire.ConsumeFixed64(v)
		return x
	}
	x, _ := protowire.ConsumeVarint(v)
	return x
}

// next reads the field at the start of msg: its number, type, and a bytes
// field's content or the bytes of another's value; n is the field's
// length, negative when msg is malformed.
func next(msg []byte) (num protowire.Number, typ protowire.Type, v []byte, n int) {
	// Most fields of an event are bytes of under 128, with a tag of one
	// byte: read those without the general decoder.
	if len(msg) >= 2 && msg[0] < 0x80 && msg[0]&7 == byte(protowire.BytesType) && msg[0]>>3 != 0 && msg[1] < 0x80 {
		if end := 2 + int(msg[1]); end <= len(msg) {
			return protowire.Number(msg[0] >> 3), protowire.BytesType, msg[2:end], end
		}
	}
	num, typ, n = protowire.ConsumeTag(msg)
	if n < 0 {
		return 0, 0, nil, n
	}
	m := protowire.ConsumeFieldValue(num, typ, msg[n:])
	if m < 0 {
		return 0, 0, nil, m
	}
	v = msg[n : n+m]
	if typ == protowire.BytesType {
		v, _ = protowire.ConsumeBytes(v)
	}
	return num, typ, v, n + m
}

// each calls f with each field of msg, as next reads them.
func each(msg []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(msg) > 0 {
		num, typ, v, n := next(msg)
		if n < 0 {
			return errUnusual
		}
		if err := f(num, typ, v); err != nil {
			return err
		}
		msg = msg[n:]
	}
	return nil
}
