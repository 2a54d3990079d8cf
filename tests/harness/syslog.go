package harness

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	apievents "github.com/gravitational/teleport/api/types/events"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/rsyslogsrv"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// sdID is the structured data element the daemon writes.
const sdID = "teleport@32473"

// TallySyslog counts what rsyslog received of the seeded audit events and
// recordings, checking the header and structured data of every message
// against its event (checkMessage), not only its MSG.
func (e *Env) TallySyslog(msgs []rsyslogsrv.Message, evs []apievents.AuditEvent, skip map[string]bool) (audit, sessions Tally) {
	t := e.T
	t.Helper()
	byUID := map[string]apievents.AuditEvent{}
	for _, ev := range evs {
		byUID[ev.GetID()] = ev
	}
	gotAudit, gotRec := map[string]int{}, map[string]int{}
	for _, m := range msgs {
		sd := m.SD[sdID]
		require.NotNil(t, sd, "a message without the daemon's structured data: %+v", m)
		if sid, ok := sd["sid"]; ok {
			ei, err := strconv.ParseInt(sd["ei"], 10, 64)
			require.NoError(t, err, "%+v", m)
			rec := e.Recordings[sid]
			require.True(t, ei >= 0 && ei < int64(len(rec)), "a recording's event the test did not seed: %+v", m)
			checkMessage(t, m, rec[ei], true)
			gotRec[fmt.Sprintf("%s/%d", sid, ei)]++
			continue
		}
		ev, ok := byUID[sd["uid"]]
		if !ok {
			continue // another audit event (AddSession's upload), counted by no one, as TallyAudit does
		}
		checkMessage(t, m, ev, false)
		gotAudit[sd["uid"]]++
	}
	for _, ev := range evs {
		audit.add(ev.GetID(), gotAudit[ev.GetID()])
	}
	for sid, rec := range e.Recordings {
		for _, ev := range rec {
			if !skip[ev.GetType()] {
				key := fmt.Sprintf("%s/%d", sid, ev.GetIndex())
				sessions.add(key, gotRec[key])
			}
		}
	}
	return audit, sessions
}

// checkMessage compares a message with the event it carries: PRI (log
// audit, and the severity of docs/syslog.md's table), TIMESTAMP, HOSTNAME,
// APP-NAME, MSGID, the structured data, and MSG, the event's JSON.
func checkMessage(t testing.TB, m rsyslogsrv.Message, ev apievents.AuditEvent, recording bool) {
	t.Helper()
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(raw, &fields))
	code, _ := fields["code"].(string)
	severity := 5
	switch success, said := fields["success"].(bool); {
	case strings.HasSuffix(code, "E"):
		severity = 3
	case said && !success, strings.HasSuffix(code, "W"):
		severity = 4
	case recording:
		severity = 6
	}
	msgID := ev.GetType()
	if len(msgID) > 32 {
		msgID = msgID[:32]
	}
	require.Equal(t, []any{13, severity, ev.GetTime().UTC().Format("2006-01-02T15:04:05.999999Z07:00"), teleportsrv.DefaultClusterName, "teleport", "-", msgID},
		[]any{m.Facility, m.Severity, m.Timestamp, m.Hostname, m.AppName, m.ProcID, m.MsgID}, "header of %s", m.SDRaw)
	sd := m.SD[sdID]
	require.Equal(t, ev.GetType(), sd["type"])
	require.Equal(t, teleportsrv.DefaultClusterName, sd["cluster"])
	require.Equal(t, code, sd["code"])
	var msg map[string]any
	require.NoError(t, json.Unmarshal([]byte(m.Msg), &msg), "MSG is the event's JSON")
	require.Equal(t, ev.GetType(), msg["event"])
	if recording {
		require.Equal(t, float64(ev.GetIndex()), msg["ei"])
		return
	}
	require.Equal(t, ev.GetID(), sd["uid"])
	require.Equal(t, ev.GetID(), msg["uid"])
}
