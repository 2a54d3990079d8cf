package main

import (
	"fmt"
	"slices"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"

	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

// plan is the backlog every process of a run derives from the same flags:
// the test Teleport server serves it, the load generator sends its bodies
// and the orchestrator knows what must arrive.
type plan struct {
	Audit      int           // audit events
	Recordings int           // session.upload events kept, each with its recording
	Sessions   int           // session events over all recordings
	Start      time.Time     // time of the first audit event
	Step       time.Duration // between audit events
	Seed       int64
	// UploadsFirst keeps the first Recordings uploads (so that they are all
	// queued at once early in the run) instead of spreading them evenly.
	UploadsFirst bool
	// FailedLogins are failed user.login events of LoginUsers users, within
	// one minute from the middle of the backlog: a brute-force burst (in the
	// middle, so that the latency runs, which read the tail, do not read it).
	FailedLogins int
}

// LoginUsers is the number of users of the brute-force burst.
const LoginUsers = 50

func (p plan) args() []string {
	return []string{
		"-audit", fmt.Sprint(p.Audit), "-recordings", fmt.Sprint(p.Recordings), "-sessions", fmt.Sprint(p.Sessions),
		"-start", p.Start.Format(time.RFC3339Nano), "-step", p.Step.String(), "-seed", fmt.Sprint(p.Seed),
		fmt.Sprintf("-uploads-first=%t", p.UploadsFirst), "-failed-logins", fmt.Sprint(p.FailedLogins),
	}
}

// recording is one seeded recording.
type recording struct {
	SID    string
	Events int
	Upload time.Time // time of its session.upload event
	Index  int       // of its session.upload event in the audit events
}

// build returns the audit events and the recordings. The generator makes
// about one session.upload in twelve events; only Recordings of them are
// kept (a recording per upload is what Teleport would have), spread evenly
// over the backlog or the first ones with UploadsFirst, and other events
// fill the backlog up to Audit events.
func (p plan) build() ([]apievents.AuditEvent, []recording) {
	raw := teleportsrv.GenerateAuditEvents(p.Audit+p.Audit/5+200, p.Start, p.Step, p.Seed)
	keep := max(p.Audit-p.Recordings, 0) // events other than uploads
	// The uploads among the events that make the backlog, then those kept.
	var uploads []int
	others := 0
	for i, ev := range raw {
		if others == keep {
			break
		}
		if ev.GetType() == "session.upload" {
			uploads = append(uploads, i)
		} else {
			others++
		}
	}
	kept := map[int]bool{}
	n := min(p.Recordings, len(uploads))
	for k := range n {
		i := k
		if !p.UploadsFirst {
			i = k * len(uploads) / n
		}
		kept[uploads[i]] = true
	}
	var (
		audit []apievents.AuditEvent
		recs  []recording
	)
	others = 0
	for i, ev := range raw {
		if others == keep && len(recs) == n {
			break
		}
		if up, ok := ev.(*apievents.SessionUpload); ok {
			if kept[i] {
				recs = append(recs, recording{SID: up.SessionID, Upload: up.Time, Index: len(audit)})
				audit = append(audit, ev)
			}
			continue
		}
		if others < keep {
			others++
			audit = append(audit, ev)
		}
	}
	if p.FailedLogins > 0 && len(audit) > 0 {
		audit = append(audit, p.burst(audit[len(audit)/2].GetTime())...)
		slices.SortStableFunc(audit, func(a, b apievents.AuditEvent) int { return a.GetTime().Compare(b.GetTime()) })
	}
	// Spread the session events over the recordings; at least 2 each (a
	// start and an end).
	for i := range recs {
		n := p.Sessions / max(len(recs), 1)
		if i < p.Sessions%max(len(recs), 1) {
			n++
		}
		recs[i].Events = max(n, 2)
	}
	return audit, recs
}

// burst is the brute-force burst: FailedLogins failed logins spread over
// the minute after from, the users taking turns.
func (p plan) burst(from time.Time) []apievents.AuditEvent {
	evs := make([]apievents.AuditEvent, 0, p.FailedLogins)
	for i := range p.FailedLogins {
		at := from.Add(time.Duration(i) * time.Minute / time.Duration(p.FailedLogins))
		evs = append(evs, &apievents.UserLogin{
			Metadata: apievents.Metadata{ID: fmt.Sprintf("brute-force-%05d", i), Type: "user.login", Code: "T1000W",
				Time: at, ClusterName: teleportsrv.DefaultClusterName},
			UserMetadata: apievents.UserMetadata{User: fmt.Sprintf("target-%02d", i%LoginUsers), Login: "root"},
			Status:       apievents.Status{Success: false, Error: "invalid credentials"},
			Method:       "local",
		})
	}
	return evs
}

// totals counts what a daemon started at from must deliver: the audit
// events at or after it, and the session events of their uploads.
func totals(audit []apievents.AuditEvent, recs []recording, from time.Time) (auditN, sessionN int) {
	for _, ev := range audit {
		if !ev.GetTime().Before(from) {
			auditN++
		}
	}
	for _, r := range recs {
		if !r.Upload.Before(from) {
			sessionN += r.Events
		}
	}
	return auditN, sessionN
}
