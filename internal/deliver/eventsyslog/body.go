package eventsyslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Is reports whether body is a syslog message (it starts with PRI's "<",
// which neither JSON nor a forward entry does).
func Is(body []byte) bool { return len(body) > 0 && body[0] == '<' }

// errNotMessage is a body that is not a message of Message's.
var errNotMessage = errors.New("not a syslog message of this daemon's")

// ToJSON returns the event's JSON in a message: its MSG, for the
// dead-letter file and for replay over another transport.
func ToJSON(body []byte) ([]byte, error) {
	rest := body
	// PRI and VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID: none
	// holds a space.
	for range 6 {
		i := bytes.IndexByte(rest, ' ')
		if i < 1 {
			return nil, errNotMessage
		}
		rest = rest[i+1:]
	}
	rest, ok := skipSD(rest)
	if !ok || len(rest) == 0 || rest[0] != ' ' {
		return nil, errNotMessage
	}
	return rest[1:], nil
}

// skipSD returns what follows the STRUCTURED-DATA at the start of b: the
// nil value, or elements whose quoted values may hold escaped quotes and
// brackets.
func skipSD(b []byte) ([]byte, bool) {
	if len(b) > 0 && b[0] == '-' {
		return b[1:], true
	}
	n := 0
	for len(b) > 0 && b[0] == '[' {
		quoted := false
		i := 1
		for ; i < len(b); i++ {
			c := b[i]
			if quoted && c == '\\' {
				i++
				continue
			}
			if c == '"' {
				quoted = !quoted
			}
			if c == ']' && !quoted {
				break
			}
		}
		if i >= len(b) {
			return nil, false
		}
		b = b[i+1:]
		n++
	}
	return b, n > 0
}

// FromJSON makes the message of an event from its JSON (a dead letter's,
// sent again), with that JSON, byte for byte, as MSG; id is the event's
// ID (the letter's). The header and structured data come from the JSON's
// fields, as Message takes them from the event's.
func (e Encoder) FromJSON(js []byte, id string) ([]byte, error) {
	var fields map[string]any
	if err := json.Unmarshal(js, &fields); err != nil {
		return nil, fmt.Errorf("a dead letter's event is not a JSON object: %w", err)
	}
	s, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, fmt.Errorf("a dead letter's event: %w", err)
	}
	ev := &auditlogpb.EventUnstructured{Id: id, Unstructured: s}
	ev.Type, _ = fields["event"].(string)
	if ei, ok := fields["ei"].(float64); ok {
		ev.Index = int64(ei)
	}
	if at, ok := fields["time"].(string); ok {
		if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
			ev.Time = timestamppb.New(t)
		}
	}
	return e.message(ev, js), nil
}
