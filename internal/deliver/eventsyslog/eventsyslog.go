// Package eventsyslog makes a Teleport event into one RFC 5424 syslog
// message, for the syslog+tls:// and relp+tls:// transports: a header a
// syslog receiver can route on (facility, a severity read from the event,
// its time, the cluster, the event type) and structured data with the
// event's identity, then the event's JSON as MSG, byte for byte what
// in_http gets (eventjson). The message is the body the pool hands the
// transport, so it is made once per event, beside the reader, as the JSON
// and msgpack bodies are.
//
// Format (RFC 5424, section 6):
//
//	<PRI>1 TIMESTAMP HOSTNAME teleport - MSGID [teleport@32473 uid="…" type="…" cluster="…" code="…" sid="…" ei="…"] {…JSON…}
package eventsyslog

import (
	"strconv"
	"strings"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/eventwire"
)

// SDID is the SD-ID of the structured data element. An SD-ID without "@"
// is reserved to IANA (RFC 5424, 6.3.2); a private one is name@<private
// enterprise number>. Neither this project nor Teleport registered a
// number for it, so it uses 32473, the number IANA reserves for
// documentation (RFC 5612): no registry lookup names anyone else's.
const SDID = "teleport@32473"

// AppName is every message's APP-NAME.
const AppName = "teleport"

// MaxMsgID is the most characters RFC 5424 allows in MSGID; a longer event
// type is cut to it (the full type is in the structured data).
const MaxMsgID = 32

// maxHostname is the most characters RFC 5424 allows in HOSTNAME.
const maxHostname = 255

// Facility is "log audit" (13), the default of --syslog-facility.
const Facility = 13

// Severities, RFC 5424 table 2.
const (
	SeverityError   = 3
	SeverityWarning = 4
	SeverityNotice  = 5
	SeverityInfo    = 6
)

// Encoder makes the messages of one reader's events.
type Encoder struct {
	// Facility is PRI's facility, 0-23.
	Facility int
	// Cluster is HOSTNAME for an event without a cluster_name field: the
	// name of the cluster the daemon reads (its Ping), or "" for "-".
	Cluster string
	// Session is the recording whose events this encoder makes, "" for
	// the audit log: its messages carry the session's id (which not every
	// event of a recording has: print events do not) and the event's
	// index in the structured data, and their severity is informational
	// unless the event failed.
	Session string
}

// Message returns ev as a syslog message, without the transport's framing.
func (e Encoder) Message(ev *auditlogpb.EventUnstructured) []byte {
	return e.message(ev, eventjson.Event(ev))
}

// message is the message of ev with body as MSG.
func (e Encoder) message(ev *auditlogpb.EventUnstructured, body []byte) []byte {
	f := readFields(ev)
	b := make([]byte, 0, len(body)+256)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(e.Facility*8+e.severity(f)), 10)
	b = append(b, ">1 "...)
	b = appendTimestamp(b, ev)
	b = append(b, ' ')
	cluster := f.cluster
	if cluster == "" {
		cluster = e.Cluster
	}
	b = appendHeaderField(b, cluster, maxHostname)
	b = append(b, " "+AppName+" - "...)
	b = appendHeaderField(b, ev.GetType(), MaxMsgID)
	b = append(b, " ["+SDID...)
	b = appendParam(b, "uid", ev.GetId())
	b = appendParam(b, "type", ev.GetType())
	b = appendParam(b, "cluster", cluster)
	if f.code != "" {
		b = appendParam(b, "code", f.code)
	}
	if e.Session != "" {
		b = appendParam(b, "sid", e.Session)
		b = appendParam(b, "ei", strconv.FormatInt(ev.GetIndex(), 10))
	}
	b = append(b, "] "...)
	return append(b, body...)
}

// fields are what the header and the structured data take from the
// event's own fields.
type fields struct {
	cluster, code string
	failed        bool // "success": false
}

func readFields(ev *auditlogpb.EventUnstructured) fields {
	f := fields{
		cluster: eventwire.Field(ev, "cluster_name").GetStringValue(),
		code:    eventwire.Field(ev, "code").GetStringValue(),
	}
	if v, ok := eventwire.Field(ev, "success").GetKind().(*structpb.Value_BoolValue); ok {
		f.failed = !v.BoolValue
	}
	return f
}

// severity is the table of docs/syslog.md. Teleport's event codes end in
// I (information), W (a failure or a denial: a failed login, a rejected
// session, a denied access) or E (an error); events that say whether they
// succeeded carry "success".
func (e Encoder) severity(f fields) int {
	switch {
	case strings.HasSuffix(f.code, "E"):
		return SeverityError
	case f.failed || strings.HasSuffix(f.code, "W"):
		return SeverityWarning
	case e.Session != "":
		return SeverityInfo
	}
	return SeverityNotice
}

// appendTimestamp writes the event's time in UTC, to the microsecond: RFC
// 5424 allows six digits of fraction at most, and drops trailing zeros.
// An event without a time has the nil value.
func appendTimestamp(b []byte, ev *auditlogpb.EventUnstructured) []byte {
	var t time.Time
	switch {
	case ev.GetTime() != nil:
		t = ev.GetTime().AsTime()
	default:
		parsed, err := time.Parse(time.RFC3339Nano, eventwire.Field(ev, "time").GetStringValue())
		if err != nil {
			return append(b, '-')
		}
		t = parsed
	}
	return t.UTC().AppendFormat(b, "2006-01-02T15:04:05.999999Z07:00")
}

// appendHeaderField writes s as a header field: printable US-ASCII only
// (anything else becomes "_"), at most most characters, "-" when empty.
func appendHeaderField(b []byte, s string, most int) []byte {
	if s == "" {
		return append(b, '-')
	}
	n := 0
	for _, r := range s {
		if n == most {
			break
		}
		if r < '!' || r > '~' {
			r = '_'
		}
		b = append(b, byte(r))
		n++
	}
	return b
}

// appendParam writes ` name="value"`, with the three characters RFC 5424
// escapes in a value (", \ and ]) escaped.
func appendParam(b []byte, name, value string) []byte {
	b = append(append(append(b, ' '), name...), '=', '"')
	value = strings.ToValidUTF8(value, "\uFFFD")
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
