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
	w.v, w.fields = v, w.fields[:0]
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

// walker reads a Struct's bytes. fields is a stack of the objects being
// visited: each object sorts its own at the top.
type walker struct {
	v      Visitor
	fields []field
}

type field struct {
	key   string // in the bytes
	value []byte // a Value message
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
	base := len(w.fields)
	defer func() { w.fields = w.fields[:base] }()
	err := each(b, func(num protowire.Number, typ protowire.Type, entry []byte) error {
		if num != 1 {
			return nil // unknown: proto.Unmarshal skips it too
		}
		if typ != protowire.BytesType {
			return errUnusual
		}
		f, err := mapEntry(entry)
		w.fields = append(w.fields, f)
		return err
	})
	if err != nil {
		return err
	}
	// Sorted by key; of a key sent twice, the last one counts, as in the
	// map proto.Unmarshal builds.
	fields := w.fields[base:]
	slices.SortStableFunc(fields, func(a, b field) int { return strings.Compare(a.key, b.key) })
	n := len(fields)
	for i := 1; i < len(fields); i++ {
		if fields[i].key == fields[i-1].key {
			n--
		}
	}
	w.v.Object(n)
	for i, f := range fields {
		if i+1 < len(fields) && fields[i+1].key == f.key {
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
	err := each(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num != 1 && num != 2:
			return nil
		case typ != protowire.BytesType || (num == 2 && seen): // a value twice is merged
			return errUnusual
		case num == 1:
			if !utf8.Valid(v) {
				return errUnusual
			}
			f.key = unsafe.String(unsafe.SliceData(v), len(v))
		default:
			f.value, seen = v, true
		}
		return nil
	})
	return f, err
}

// value visits a Value message: of its kinds, the last one sent counts.
func (w *walker) value(b []byte, depth int) error {
	kind, last := protowire.Number(0), protowire.Number(0)
	var payload []byte
	var bits uint64
	err := each(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		want := protowire.VarintType
		switch num {
		case kindNumber:
			want = protowire.Fixed64Type
		case kindString, kindStruct, kindList:
			want = protowire.BytesType
		case kindNull, kindBool:
		default:
			return nil
		}
		if typ != want || ((num == kindStruct || num == kindList) && last == num) {
			return errUnusual // a message kind twice in a row is merged
		}
		kind, last = num, num
		if typ == protowire.BytesType {
			payload = v
		} else {
			bits = scalar(v, typ)
		}
		return nil
	})
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

func (w *walker) list(b []byte, depth int) error {
	if depth > maxDepth {
		return errUnusual
	}
	n := 0
	err := each(b, func(num protowire.Number, typ protowire.Type, _ []byte) error {
		if num == 1 && typ != protowire.BytesType {
			return errUnusual
		}
		if num == 1 {
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.v.List(n)
	err = each(b, func(num protowire.Number, _ protowire.Type, item []byte) error {
		if num != 1 {
			return nil
		}
		return w.value(item, depth)
	})
	if err != nil {
		return err
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

// each calls f with each field of msg: a bytes field's content, or the
// bytes of another's value.
func each(msg []byte, f func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return errUnusual
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return errUnusual
		}
		v := msg[n : n+m]
		if typ == protowire.BytesType {
			v, _ = protowire.ConsumeBytes(v)
		}
		if err := f(num, typ, v); err != nil {
			return err
		}
		msg = msg[n+m:]
	}
	return nil
}
