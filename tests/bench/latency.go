package main

import (
	"fmt"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"
)

// latencyRuns measure events/s with latency added on the Fluentd path by a
// toxiproxy proxy, one event per POST and batched, against what the
// connections can carry: max-connections / latency x 0.8.
func latencyRuns(o *options, rep *report, tp *child, audit []apievents.AuditEvent, recs []recording) error {
	if !o.runs["latency"] && !o.runs["latency-batch"] {
		return nil
	}
	// The tail of the backlog: its last latencyEvents audit events and
	// the recordings they announce.
	from := audit[max(len(audit)-o.latencyEvents, 0)].GetTime()
	a, s := totals(audit, recs, from)
	target := float64(o.conns) / o.latency.Seconds() * 0.8
	targetName := fmt.Sprintf("target: %d connections / %s x 0.8", o.conns, o.latency)
	name := fmt.Sprintf("%s on the Fluentd path, ", o.latency)
	for _, run := range []struct {
		key, name string
		flags     []string
	}{{"latency", name + "1 event per POST", nil}, {"latency-batch", name + fmt.Sprintf("--fluentd-batch %d", o.batch), o.batchFlags()}} {
		if !o.runs[run.key] {
			continue
		}
		r, err := runDaemon(o, run.name, tp, from, a+s, run.flags, o.latency, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline(targetName, target)
		rep.Results = append(rep.Results, r)
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("Latency runs read the last %d audit events of the backlog and their recordings (%d events); the latency is a toxiproxy latency toxic of %s on the receiver's answers. Their CPU per event is mostly fixed costs (start-up, a checkpoint transaction every 10 ms) over few events, and their fetch-to-ack times are the wait of a backlog read ahead (%s and the in-flight window) behind the connections.", a, a+s, o.latency, o.pagesRead()))
	return nil
}

// pagesRead names the pages the daemon runs read from Teleport.
func (o *options) pagesRead() string {
	if o.page > 0 {
		return fmt.Sprintf("pages of %d", o.page)
	}
	return "the daemon's default pages, which grow through a backlog"
}
