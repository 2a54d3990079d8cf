package eventsyslog_test

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventsyslog"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// header is RFC 5424's header and structured data as Message writes them:
// PRI, VERSION, TIMESTAMP (six digits of fraction at most), HOSTNAME,
// APP-NAME, PROCID, MSGID of printable ASCII, one element of params.
var header = regexp.MustCompile(`^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z|-) ([!-~]{1,255}) teleport - ([!-~]{1,32}) \[teleport@32473((?: [a-z]+="(?:[^"\\\]]|\\["\\\]])*")+)\] `)

func event(typ string, fields map[string]any) *auditlogpb.EventUnstructured {
	s, err := structpb.NewStruct(fields)
	if err != nil {
		panic(err)
	}
	return &auditlogpb.EventUnstructured{Type: typ, Id: "uid-1", Index: 7,
		Time: timestamppb.New(time.Date(2026, 12, 8, 4, 5, 6, 123456789, time.UTC)), Unstructured: s}
}

func TestMessageHeaderAndStructuredData(t *testing.T) {
	ev := event("user.login", map[string]any{"cluster_name": "prod", "code": "T1000W", "success": false, "sid": "s-1", "user": `a"b]c\d`})
	msg := string(eventsyslog.Encoder{Facility: 13, Cluster: "fallback"}.Message(ev))
	require.Equal(t, `<108>1 2026-12-08T04:05:06.123456Z prod teleport - user.login [teleport@32473 uid="uid-1" type="user.login" cluster="prod" code="T1000W"] `+
		string(eventjson.Event(ev)), msg, "a failure is a warning (13*8+4); no sid outside recordings")

	rec := event("print", map[string]any{"code": "T2000I"}) // print events carry no sid
	rec.Time = timestamppb.New(time.Date(2026, 12, 8, 4, 5, 6, 0, time.UTC))
	msg = string(eventsyslog.Encoder{Facility: 10, Cluster: "from-ping", Session: `s"1]`}.Message(rec))
	require.Equal(t, `<86>1 2026-12-08T04:05:06Z from-ping teleport - print [teleport@32473 uid="uid-1" type="print" cluster="from-ping" code="T2000I" sid="s\"1\]" ei="7"] `+
		string(eventjson.Event(rec)), msg, "a recording's event is informational (10*8+6), with its session and index")
}

func TestSeverityTable(t *testing.T) {
	for _, c := range []struct {
		fields    map[string]any
		recording bool
		want      int
	}{
		{map[string]any{"code": "T1000I", "success": true}, false, eventsyslog.SeverityNotice},
		{map[string]any{"code": "T1000W"}, false, eventsyslog.SeverityWarning},
		{map[string]any{"code": "T3007I", "success": false}, false, eventsyslog.SeverityWarning},
		{map[string]any{"code": "TX001E"}, false, eventsyslog.SeverityError},
		{map[string]any{}, false, eventsyslog.SeverityNotice},
		{map[string]any{"code": "T2000I"}, true, eventsyslog.SeverityInfo},
		{map[string]any{"code": "T2000W"}, true, eventsyslog.SeverityWarning},
	} {
		sid := ""
		if c.recording {
			sid = "s-1"
		}
		msg := eventsyslog.Encoder{Facility: 0, Session: sid}.Message(event("x", c.fields))
		m := header.FindSubmatch(msg)
		require.NotNil(t, m, "%s", msg)
		require.Equal(t, c.want, atoi(t, string(m[1])), "%v", c.fields)
	}
}

func atoi(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestLongOrOddHeaderFields(t *testing.T) {
	long := strings.Repeat("access_list.member.", 3) + "update"
	ev := event(long, map[string]any{"cluster_name": "clüster one"})
	ev.Time = nil
	msg := string(eventsyslog.Encoder{Facility: 13}.Message(ev))
	m := header.FindStringSubmatch(msg)
	require.NotNil(t, m, msg)
	require.Equal(t, long[:eventsyslog.MaxMsgID], m[4], "MSGID is the type's first 32 characters")
	require.Contains(t, m[5], `type="`+long+`"`, "the full type is in the structured data")
	require.Equal(t, "cl_ster_one", m[3], "HOSTNAME keeps printable ASCII only")
	require.Contains(t, m[5], `cluster="clüster one"`)
	require.Equal(t, "-", m[2], "no time: the nil value")

	noCluster := event("x", nil)
	require.Contains(t, string(eventsyslog.Encoder{}.Message(noCluster)), " - teleport - x ", "no cluster anywhere: the nil value")
}

// Every generated Teleport event, and random Structs, make a message
// whose header parses and whose MSG is the event's JSON, as ToJSON gives it
// back for the dead-letter file.
func TestMessagesParseAndGiveBackTheirJSON(t *testing.T) {
	evs := teleportsrv.GenerateUnstructured(500, 100, time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC), 7)
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		evs = append(evs, &auditlogpb.EventUnstructured{Type: "random", Id: "r", Unstructured: teleportsrv.RandomStruct(rng, 3)})
	}
	for i, ev := range evs {
		for _, sid := range []string{"", "6c8a36a4-0c1f-4d0e-9b2b-3f5c4f1c9a7e"} {
			msg := eventsyslog.Encoder{Facility: 13, Cluster: "c", Session: sid}.Message(ev)
			require.True(t, eventsyslog.Is(msg))
			require.NotNil(t, header.Find(msg), "event %d: %s", i, msg)
			js, err := eventsyslog.ToJSON(msg)
			require.NoError(t, err)
			require.Equal(t, string(eventjson.Event(ev)), string(js), "event %d", i)
		}
	}
}

func TestToJSONRefusesWhatIsNotAMessage(t *testing.T) {
	for _, body := range []string{"", "<13>1 a b c", `<13>1 t h a p m [x y="unterminated] {}`, `<13>1 t h a p m []{}`, `<13>1 t h a p m - `} {
		_, err := eventsyslog.ToJSON([]byte(body))
		if body == `<13>1 t h a p m - ` {
			require.NoError(t, err, "an empty MSG is a message")
			continue
		}
		require.Error(t, err, "%q", body)
	}
}

// A dead letter holds the event's JSON; sent again to a syslog URL it
// becomes the same message the event made in the first place.
func TestFromJSONMakesTheMessageTheEventMade(t *testing.T) {
	for i, ev := range teleportsrv.GenerateUnstructured(500, 100, time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC), 9) {
		for _, e := range []eventsyslog.Encoder{{Facility: 13, Cluster: "c"}, {Facility: 10, Session: "6c8a36a4-0c1f-4d0e-9b2b-3f5c4f1c9a7e"}} {
			got, err := e.FromJSON(eventjson.Event(ev), ev.GetId())
			require.NoError(t, err)
			require.Equal(t, string(e.Message(ev)), string(got), "event %d", i)
		}
	}
	_, err := eventsyslog.Encoder{}.FromJSON([]byte(`[1]`), "x")
	require.Error(t, err)
}
