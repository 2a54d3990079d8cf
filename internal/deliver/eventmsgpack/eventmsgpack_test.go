package eventmsgpack_test

import (
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventmsgpack"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// The forward transport's test (record_test.go there) compares the
// entries with those it makes of the JSON; these check what the dead-letter
// file gets back from them.

// negativeZero is a -0 in JSON: the record holds the integer 0, as
// Fluentd reads -0.
var negativeZero = regexp.MustCompile(`([:,\[])-0([,}\]])`)

// wantJSON is eventjson's JSON with \ufffd written as the character, which
// is all a record keeps of invalid UTF-8, and -0 as 0.
func wantJSON(ev *auditlogpb.EventUnstructured) string {
	s := strings.ReplaceAll(string(eventjson.Event(ev)), `\ufffd`, "\uFFFD")
	s = negativeZero.ReplaceAllString(s, "${1}0${2}")
	return negativeZero.ReplaceAllString(s, "${1}0${2}") // again: -0,-0
}

func TestToJSONGivesBackTheEventsJSON(t *testing.T) {
	for i, u := range teleportsrv.GenerateUnstructured(500, 100, time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC), 7) {
		body := eventmsgpack.Entry(u)
		require.Equal(t, eventmsgpack.WithTime, eventmsgpack.Is(body), "event %d", i)
		got, err := eventmsgpack.ToJSON(body)
		require.NoError(t, err)
		require.Equal(t, string(eventjson.Event(u)), string(got), "event %d", i)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 2000 {
		ev := &auditlogpb.EventUnstructured{Type: "random", Unstructured: teleportsrv.RandomStruct(rng, 3)}
		body := eventmsgpack.Entry(ev)
		got, err := eventmsgpack.ToJSON(body)
		require.NoError(t, err)
		require.Equal(t, wantJSON(ev), string(got), "struct %d", i)
	}
}

func TestWhatABodyHolds(t *testing.T) {
	withTime := &structpb.Struct{Fields: map[string]*structpb.Value{"time": structpb.NewStringValue("2026-11-03T10:00:00Z"), "a": structpb.NewNumberValue(1)}}
	noTime := &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewNumberValue(1)}}
	nan := &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewNumberValue(math.NaN())}}
	for _, c := range []struct {
		s    *structpb.Struct
		kind eventmsgpack.Kind
		json string
	}{
		{withTime, eventmsgpack.WithTime, `{"a":1,"time":"2026-11-03T10:00:00Z"}`},
		{noTime, eventmsgpack.RecordOnly, `{"a":1}`},
		{&structpb.Struct{}, eventmsgpack.RecordOnly, `{}`},
		// JSON cannot hold a NaN: the event is eventjson's object naming it.
		{nan, eventmsgpack.JSON, `{"event":"t","uid":"i","ei":3,"encode_error":"json: unsupported value: NaN"}`},
	} {
		body := eventmsgpack.Entry(&auditlogpb.EventUnstructured{Type: "t", Id: "i", Index: 3, Unstructured: c.s})
		require.Equal(t, c.kind, eventmsgpack.Is(body), c.json)
		got, err := eventmsgpack.ToJSON(body)
		require.NoError(t, err)
		require.Equal(t, c.json, string(got))
	}
	for _, text := range []string{``, `{}`, ` {"a":1}`, `[1]`, `"x"`, `null`, `5`} {
		require.Equal(t, eventmsgpack.JSON, eventmsgpack.Is([]byte(text)), text)
	}
}

func TestToJSONRefusesWhatIsNoRecord(t *testing.T) {
	for _, body := range [][]byte{{0x92}, {0x81, 0xa1, 'a'}, {0x81, 0xa1, 'a', 0xc4, 0x01, 'x'}, {0x80, 0x01}} {
		_, err := eventmsgpack.ToJSON(body)
		require.Error(t, err, "% x", body)
	}
}

func BenchmarkEntry(b *testing.B) {
	evs := teleportsrv.GenerateUnstructured(1000, 0, time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		eventmsgpack.Entry(evs[i%len(evs)])
	}
}
