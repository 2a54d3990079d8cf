package metrics

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// ReportOptions configure RunReports.
type ReportOptions struct {
	// Bar draws a progress bar on Out (a terminal) instead of logging
	// progress lines; for a backfill with --exit-on-last-event.
	Bar bool
	Out io.Writer
	// Start is where the audit log is read from: progress in time runs
	// from it to now.
	Start time.Time
	// Every is the interval of progress lines (without Bar); Summary that
	// of the summary line.
	Every, Summary time.Duration
}

// snapshot is a reading of the counters that progress is told from.
type snapshot struct {
	at                        time.Time
	audit, session            float64 // events sent
	retried, deadLettered     float64
	acked                     time.Time
	sessionsActive, sessQueue float64
}

// Totals are the events sent and dead-lettered so far by this process.
type Totals struct {
	Sent, DeadLettered float64
}

// Totals reads the counters, for the exit line.
func (m *Metrics) Totals() Totals {
	s := m.snapshot()
	return Totals{Sent: s.audit + s.session, DeadLettered: s.deadLettered}
}

func (m *Metrics) snapshot() snapshot {
	s := snapshot{at: time.Now()}
	families, err := m.Registry.Gather()
	if err != nil {
		return s
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			stream := ""
			for _, l := range mt.GetLabel() {
				if l.GetName() == "stream" {
					stream = l.GetValue()
				}
			}
			v := mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
			switch f.GetName() {
			case namespace + "_events_sent_total":
				if stream == Session {
					s.session += v
				} else {
					s.audit += v
				}
			case namespace + "_events_retried_total":
				s.retried += v
			case namespace + "_events_dead_lettered_total":
				s.deadLettered += v
			case namespace + "_sessions_active":
				s.sessionsActive = v
			case namespace + "_sessions_queued":
				s.sessQueue = v
			}
		}
	}
	if ns := m.ackedUnix.Load(); ns != 0 {
		s.acked = time.Unix(0, ns)
	}
	return s
}

// RunReports reports progress until ctx ends: a progress bar or a line
// every opts.Every, and a summary line every opts.Summary.
func (m *Metrics) RunReports(ctx context.Context, log zerolog.Logger, opts ReportOptions) {
	r := m.newReporter(log, opts)
	if r.bar != nil {
		defer r.bar.exit()
	}
	t := time.NewTicker(r.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.report(m.snapshot())
	}
}

// reporter tells progress from one snapshot to the next; RunReports hands
// it one per tick, tests their own.
type reporter struct {
	m    *Metrics
	log  zerolog.Logger
	opts ReportOptions
	bar  *bar
	tick time.Duration

	first, last, lastSummary snapshot
	caught                   bool
}

func (m *Metrics) newReporter(log zerolog.Logger, opts ReportOptions) *reporter {
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	if opts.Summary <= 0 {
		opts.Summary = time.Minute
	}
	r := &reporter{m: m, log: log, opts: opts, tick: opts.Every}
	if opts.Bar {
		r.bar = &bar{w: opts.Out, start: time.Now()}
		r.tick = 500 * time.Millisecond
	}
	r.first = m.snapshot()
	r.last, r.lastSummary = r.first, r.first
	return r
}

// report draws the bar or logs progress (only while a backlog is read:
// being caught up is said once), and the summary when it is due.
func (r *reporter) report(now snapshot) {
	switch {
	case r.bar != nil:
		r.bar.draw(fmt.Sprintf("%s events, %.0f/s, at %s", count(now.audit+now.session),
			rate(r.first, now), position(now.acked)), r.m.position(r.opts.Start, now))
	case r.m.caughtUp() != r.caught:
		if r.caught = !r.caught; r.caught {
			r.log.Info().Float64("events", now.audit+now.session).Str("position", position(now.acked)).
				Msg("caught up: every audit event read so far is delivered")
		}
		r.last = now
	case !r.caught && now.at.Sub(r.last.at) >= r.opts.Every:
		r.log.Info().Float64("events", now.audit+now.session).Str("rate", fmt.Sprintf("%.1f/s", rate(r.last, now))).
			Str("position", position(now.acked)).Str("done", fmt.Sprintf("%.1f%%", 100*r.m.position(r.opts.Start, now))).
			Msg("progress")
		r.last = now
	}
	if now.at.Sub(r.lastSummary.at) >= r.opts.Summary {
		r.summary(now)
	}
}

func (r *reporter) summary(now snapshot) {
	last := r.lastSummary
	r.log.Info().
		Str("audit_rate", fmt.Sprintf("%.1f/s", (now.audit-last.audit)/now.at.Sub(last.at).Seconds())).
		Str("session_rate", fmt.Sprintf("%.1f/s", (now.session-last.session)/now.at.Sub(last.at).Seconds())).
		Float64("retries", now.retried-last.retried).
		Float64("dead_lettered", now.deadLettered-last.deadLettered).
		Dur("lag", time.Duration(r.m.lag()*float64(time.Second)).Round(time.Second)).
		Float64("sessions_active", now.sessionsActive).Float64("sessions_queued", now.sessQueue).
		Msg("summary of the last minute")
	r.lastSummary = now
}

// position is how far the checkpointed audit position is from start to now.
func (m *Metrics) position(start time.Time, s snapshot) float64 {
	if s.acked.IsZero() || !s.at.After(start) {
		return 0
	}
	return min(max(s.acked.Sub(start).Seconds()/s.at.Sub(start).Seconds(), 0), 1)
}

func rate(from, to snapshot) float64 {
	d := to.at.Sub(from.at).Seconds()
	if d <= 0 {
		return 0
	}
	return (to.audit + to.session - from.audit - from.session) / d
}

func position(t time.Time) string {
	if t.IsZero() {
		return "start"
	}
	return t.UTC().Format(time.RFC3339)
}

func count(v float64) string { return fmt.Sprintf("%.0f", v) }

// bar is a one-line progress bar redrawn in place on a terminal:
// "desc  42% |############                  | [1m3s:1m27s]" (elapsed:left).
type bar struct {
	w     io.Writer
	start time.Time
}

const barWidth = 30

func (b *bar) draw(desc string, frac float64) {
	frac = min(max(frac, 0), 1)
	n := int(frac * barWidth)
	elapsed := time.Since(b.start).Round(time.Second)
	left := "?"
	if frac > 0 {
		left = (time.Duration(float64(elapsed)/frac) - elapsed).Round(time.Second).String()
	}
	fmt.Fprintf(b.w, "\r%s %3d%% |%s%s| [%s:%s]\x1b[K", desc, int(frac*100),
		strings.Repeat("█", n), strings.Repeat(" ", barWidth-n), elapsed, left)
}

// exit ends the bar's line, so that what follows starts on a new one.
func (b *bar) exit() { fmt.Fprintln(b.w) }
