// Package sessions streams session recordings to Fluentd: a manager actor,
// a tap of the poller, registers each recording its session.upload event
// announces, and runs one player actor per recording, at most Concurrency at
// once.
//
// Every registered recording lives in the store until it is streamed
// completely or given up, so the backlog costs disk, not memory: the manager
// holds at most a slice of it (memQueue) and reads on in queue order.
package sessions

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/google/uuid"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/inflight"
	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/eventwire"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Name is the manager's name under the root.
const Name = "sessions"

// UploadEvent is the audit event type that announces a complete recording.
const UploadEvent = "session.upload"

// memQueue is how many queued recordings the manager holds in memory.
const memQueue = 256

// Streamer is the Teleport API call the players use.
type Streamer interface {
	StreamUnstructuredSessionEvents(ctx context.Context, sessionID string, startIndex int64) (chan *auditlogpb.EventUnstructured, chan error)
}

// Store is what the manager and players read; they write through the
// checkpoint writer.
type Store interface {
	Recording(id string) (persistence.Recording, bool, error)
	Recordings(after string, limit int) (persistence.RecordingPage, error)
	LastRecordingSeq() (uint64, error)
	GivenUpRecordings() ([]persistence.GivenUp, error)
}

// Deps configure the manager and its players.
type Deps struct {
	Sessions   Streamer
	Store      Store
	Checkpoint *actor.PID
	Pool       *actor.PID // unused with DryRun
	// URL is --fluentd-session-url; recording <sid> goes to URL.<sid>.log.
	URL string
	// EncodeFor makes the body of each event of recording sid (nil: its
	// JSON): a syslog message names its session, which a recording's
	// events do not all carry.
	EncodeFor func(sid string) inflight.Encode
	// Filter says which session events are sent (--skip-session-types).
	Filter inflight.Filter
	// Concurrency bounds the players (--concurrency).
	Concurrency int
	// Window bounds each player's events sent and not yet checkpointed.
	Window int
	// UploadWait is how long after its session.upload event a recording
	// that Teleport does not have is looked for; at least MinAttempts
	// attempts are made whatever the age of the event.
	UploadWait  time.Duration
	MinAttempts int

	DryRun          bool
	ExitOnLastEvent bool
	// Kit makes the players' props.
	Kit     supervisor.Kit
	Clock   clockwork.Clock
	Log     zerolog.Logger
	Metrics *metrics.Metrics // nil: private ones
}

// Defaults for the Deps fields left zero.
const (
	DefaultUploadWait  = 10 * time.Minute
	DefaultMinAttempts = 3
	DefaultWindow      = 32
)

// Wants tells the poller which audit events the manager observes.
func Wants(ev *auditlogpb.EventUnstructured) bool { return ev.Type == UploadEvent }

// Key is the checkpoint key of recording sid.
func Key(sid string) string { return "session/" + sid }

// SessionOf is the recording whose events go to u (URLFor's), "" for a
// URL that is not a recording's.
func SessionOf(u string) string {
	rest, ok := strings.CutSuffix(u, ".log")
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 || strings.Contains(rest[i:], "/") {
		return ""
	}
	sid, err := url.PathUnescape(rest[i+1:])
	if err != nil {
		return ""
	}
	return sid
}

// URLFor is where the events of recording sid are posted. The ID is escaped
// (a well-formed one, a UUID, has nothing to escape): whatever it holds
// stays in the last segment of the path.
func URLFor(base, sid string) string {
	if _, rest, _ := strings.Cut(base, "://"); !strings.Contains(rest, "/") {
		base += "/" // a syslog URL needs no path: the session's goes after one
	}
	return base + "." + url.PathEscape(sid) + ".log"
}

// ValidID reports whether sid is a session ID as Teleport makes them: a
// UUID in its canonical form. Anything else is not streamed, as it is not
// a recording Teleport has and it would go into the URL of its events.
func ValidID(sid string) bool {
	_, err := uuid.Parse(sid)
	return err == nil && len(sid) == 36 // Parse also takes the urn: and {} forms
}

// Manager is the session manager actor.
type Manager struct {
	Deps
	log   zerolog.Logger
	epoch messages.Epoch

	nextSeq uint64
	// queue holds registered recordings not playing, in order; it has
	// every one there is when loadedAll, else the store has more after
	// queueAfter.
	queue      []persistence.Recording
	queueAfter string
	loadedAll  bool
	active     map[string]*actor.PID
	// registering maps a recording being registered to the Observes
	// waiting for its registration to be on disk.
	registering map[string][]*messages.Observe
	// saving holds the recordings whose state the manager itself is
	// writing (a player death counted): finished only once on disk.
	saving map[string]bool
	wait   timer.Timer // until the first queued recording is due

	// givenUp lists the recordings given up in this run, for
	// --exit-on-last-event; Props shares it across the manager's restarts.
	givenUp *[]string

	auditDone bool
	finished  bool
	draining  bool
	drainTo   *actor.PID
}

// Props returns the manager's props, made by d.Kit.
func Props(d Deps) *actor.Props {
	givenUp := new([]string)
	return d.Kit.Props(Name, func() actor.Actor {
		m := New(d)
		m.givenUp = givenUp
		return m
	})
}

// New returns a manager; spawn it with actor.PropsFromProducer.
func New(d Deps) *Manager {
	d.Clock = timer.Or(d.Clock)
	if d.Concurrency <= 0 {
		d.Concurrency = 1
	}
	if d.Window <= 0 {
		d.Window = DefaultWindow
	}
	if d.UploadWait <= 0 {
		d.UploadWait = DefaultUploadWait
	}
	if d.MinAttempts <= 0 {
		d.MinAttempts = DefaultMinAttempts
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	return &Manager{Deps: d, wait: timer.Timer{Clock: d.Clock}, givenUp: new([]string)}
}

type startTick struct{}

// Receive implements actor.Actor.
func (m *Manager) Receive(ctx actor.Context) {
	switch msg := supervisor.Fault(timer.Message(ctx), Name).(type) {
	case *actor.Started:
		m.start(ctx)
	case *messages.Observe:
		m.observe(ctx, msg)
	case *messages.Saved:
		if msg.Epoch == m.epoch {
			delete(m.saving, strings.TrimPrefix(msg.Key, Key("")))
			m.registered(ctx, msg)
			m.startPlayers(ctx) // a recording whose crash count was saving may start
		}
	case *messages.SaveFailed:
		if msg.Epoch == m.epoch {
			m.saveFailed(ctx, msg)
		}
	case *playerDone:
		m.playerDone(ctx, msg)
	case *actor.Terminated:
		m.playerDied(ctx, msg.Who)
	case *startTick:
		m.startPlayers(ctx)
	case *messages.CaughtUp:
		m.auditDone = true
		m.maybeFinish(ctx)
	case *messages.Drain:
		m.draining, m.drainTo = true, ctx.Sender()
		m.wait.Stop()
		for _, pid := range m.active {
			ctx.Send(pid, &drain{})
		}
		m.maybeFinish(ctx)
	case *actor.Stopping, *actor.Restarting:
		m.wait.Stop()
	}
}

func (m *Manager) start(ctx actor.Context) {
	m.epoch = messages.NewEpoch()
	m.log = m.Log.With().Str("actor", Name).Logger()
	m.active = map[string]*actor.PID{}
	m.registering = map[string][]*messages.Observe{}
	m.saving = map[string]bool{}
	last, err := m.Store.LastRecordingSeq()
	if err != nil {
		panic(fmt.Errorf("load session queue: %w", err))
	}
	// Registrations of a previous incarnation may still be on their way to
	// disk; numbering from the clock keeps new ones from taking their seq.
	m.nextSeq = max(last+1, uint64(m.Clock.Now().UnixMicro()))
	m.refill()
	if n := len(m.queue); n > 0 {
		more := ""
		if !m.loadedAll {
			more = "+"
		}
		m.log.Info().Str("recordings", fmt.Sprint(n, more)).Msg("resuming session recordings")
	}
	// The poller sends again what a previous incarnation may have lost.
	ctx.ActorSystem().EventStream.Publish(&messages.TapStarted{PID: ctx.Self()})
	m.startPlayers(ctx)
}

// refill reads the next slice of the backlog from the store.
func (m *Manager) refill() {
	for !m.loadedAll && len(m.queue) < memQueue/2 {
		page, err := m.Store.Recordings(m.queueAfter, memQueue-len(m.queue))
		if err != nil {
			panic(fmt.Errorf("load session queue: %w", err))
		}
		for _, r := range page.Recordings {
			if m.active[r.ID] == nil {
				m.queue = append(m.queue, r)
			}
		}
		m.queueAfter, m.loadedAll = page.Last, !page.More
	}
}

func (m *Manager) observe(ctx actor.Context, o *messages.Observe) {
	sid := stringField(o.Event, "sid")
	answer := func(o *messages.Observe) {
		ctx.Send(o.ReplyTo, &messages.Observed{Epoch: o.Epoch, Seq: o.Seq, Tap: ctx.Self()})
	}
	if sid == "" {
		m.log.Warn().Str("event_id", o.Event.Id).Msg("session.upload event without a session ID; no recording to stream")
		answer(o)
		return
	}
	if !ValidID(sid) {
		m.Metrics.SessionsGivenUp.WithLabelValues("invalid_id").Inc()
		m.log.Error().Str("event_id", o.Event.Id).Str("session_id", persistence.Cut(strconv.QuoteToASCII(sid), 128)).
			Msg("session.upload event whose session ID is not a UUID; its recording is not streamed (the upload event itself is forwarded)")
		answer(o)
		return
	}
	if waiting, ok := m.registering[sid]; ok {
		m.registering[sid] = append(waiting, o)
		return
	}
	if m.active[sid] != nil {
		answer(o)
		return
	}
	if _, ok, err := m.Store.Recording(sid); err != nil {
		panic(fmt.Errorf("look up recording %s: %w", sid, err))
	} else if ok {
		answer(o) // replayed after a restart: registered already
		return
	}
	rec := persistence.Recording{ID: sid, Seq: m.nextSeq, Registered: m.Clock.Now().UTC(), UploadTime: o.Event.Time.AsTime()}
	m.nextSeq++
	m.registering[sid] = []*messages.Observe{o}
	ctx.Send(m.Checkpoint, &messages.Save{Key: Key(sid), Epoch: m.epoch, Seq: rec.Seq,
		Writes: persistence.RecordingWrites(rec), ReplyTo: ctx.Self()})
}

// registered answers the Observes of a recording now on disk and queues it.
func (m *Manager) registered(ctx actor.Context, s *messages.Saved) {
	sid := strings.TrimPrefix(s.Key, Key(""))
	waiting, ok := m.registering[sid]
	if !ok {
		return
	}
	delete(m.registering, sid)
	for _, o := range waiting {
		ctx.Send(o.ReplyTo, &messages.Observed{Epoch: o.Epoch, Seq: o.Seq, Tap: ctx.Self()})
	}
	rec, ok, err := m.Store.Recording(sid)
	if err != nil {
		panic(fmt.Errorf("look up recording %s: %w", sid, err))
	}
	if ok && m.loadedAll && len(m.queue) < memQueue {
		m.queue = append(m.queue, rec)
		m.queueAfter = rec.QueueKey()
	} else {
		m.loadedAll = false
	}
	m.log.Debug().Str("session_id", sid).Msg("session recording registered")
	m.startPlayers(ctx)
}

// saveFailed handles a registration, or a crash count, that can never be
// written (see messages.SaveFailed). A recording that cannot be registered
// is not streamed: it is counted and reported as given up, its upload
// event answered so that the audit stream goes on.
func (m *Manager) saveFailed(ctx actor.Context, f *messages.SaveFailed) {
	sid := strings.TrimPrefix(f.Key, Key(""))
	delete(m.saving, sid)
	waiting, registering := m.registering[sid]
	delete(m.registering, sid)
	log := m.log.Error().Err(f.Err).Str("session_id", sid)
	if !registering {
		log.Msg("a session recording's progress cannot be stored; it goes on from the last stored one")
		m.startPlayers(ctx)
		return
	}
	log.Msg("a session recording cannot be registered in the state file; it is not streamed (its upload event is forwarded)")
	m.Metrics.SessionsGivenUp.WithLabelValues("unwritable").Inc()
	*m.givenUp = append(*m.givenUp, sid)
	for _, o := range waiting {
		ctx.Send(o.ReplyTo, &messages.Observed{Epoch: o.Epoch, Seq: o.Seq, Tap: ctx.Self()})
	}
	m.maybeFinish(ctx)
}

// startPlayers starts queued recordings that are due, up to Concurrency.
func (m *Manager) startPlayers(ctx actor.Context) {
	if m.draining {
		m.maybeFinish(ctx) // a drain waits for the players that stop
		return
	}
	m.refill()
	now := m.Clock.Now()
	var next time.Time
	for i := 0; i < len(m.queue) && len(m.active) < m.Concurrency; {
		rec := m.queue[i]
		if m.saving[rec.ID] {
			// Its crash count is on its way to disk; the player reads the
			// store when it starts, and saves under the same key.
			i++
			continue
		}
		if rec.NotBefore.After(now) {
			if next.IsZero() || rec.NotBefore.Before(next) {
				next = rec.NotBefore
			}
			i++
			continue
		}
		m.queue = append(m.queue[:i], m.queue[i+1:]...)
		m.active[rec.ID] = supervisor.Spawn(ctx, playerProps(m.Deps, rec, m.epoch), PlayerKind)
		m.refill()
	}
	m.Metrics.SessionsActive.Set(float64(len(m.active)))
	m.Metrics.SessionsQueued.Set(float64(len(m.queue)))
	if !next.IsZero() && len(m.active) < m.Concurrency {
		m.wait.After(ctx, next.Sub(now), &startTick{})
	}
	m.maybeFinish(ctx)
}

func (m *Manager) playerDone(ctx actor.Context, d *playerDone) {
	// The manager stops the player, not the player itself: its Terminated
	// then comes after this report, and only a player that died (its
	// restart budget spent) reaches playerDied as one still active.
	ctx.Stop(d.pid)
	if d.epoch != m.epoch || !d.pid.Equal(m.active[d.rec.ID]) {
		return
	}
	delete(m.active, d.rec.ID)
	if d.outcome == gaveUp {
		*m.givenUp = append(*m.givenUp, d.rec.ID)
	}
	if d.outcome == retry {
		m.queue = append(m.queue, d.rec) // at the end: one bad recording does not hold up the rest
	}
	m.startPlayers(ctx)
}

// playerDied handles a player that stopped without reporting: its restart
// budget is spent. The recording goes back to the queue for later.
func (m *Manager) playerDied(ctx actor.Context, who *actor.PID) {
	for sid, pid := range m.active {
		if !pid.Equal(who) {
			continue
		}
		delete(m.active, sid)
		rec, ok, err := m.Store.Recording(sid)
		if err != nil {
			panic(fmt.Errorf("look up recording %s: %w", sid, err))
		}
		if ok && !m.draining {
			m.crashed(ctx, rec)
		}
		break
	}
	m.startPlayers(ctx)
}

// crashed counts a player's death on rec in the state file, so that a
// restart of the daemon does not reset it, and gives the recording up at
// MaxCrashes; else it is tried again after a delay.
func (m *Manager) crashed(ctx actor.Context, rec persistence.Recording) {
	rec.Crashes++
	rec.Failures++
	log := m.log.Error().Str("session_id", rec.ID).Int("crashes", rec.Crashes).Int64("index", rec.Index)
	writes := persistence.RecordingWrites(rec)
	if rec.Crashes >= MaxCrashes {
		log.Msg("the session player failed on this recording every time; giving up on it")
		m.Metrics.SessionsGivenUp.WithLabelValues("failing").Inc()
		*m.givenUp = append(*m.givenUp, rec.ID)
		writes = persistence.RecordingGiveUpWrites(rec, "crashing", m.Clock.Now().UTC())
	} else {
		rec.NotBefore = m.Clock.Now().Add(retries.Delay(rec.Failures))
		log.Time("retry_at", rec.NotBefore).Msg("session player kept failing and was stopped; the recording is retried later")
		writes = persistence.RecordingWrites(rec)
		m.queue = append(m.queue, rec)
	}
	m.saving[rec.ID] = true
	ctx.Send(m.Checkpoint, &messages.Save{Key: Key(rec.ID), Epoch: m.epoch, Seq: rec.Seq, Writes: writes, ReplyTo: ctx.Self()})
}

func (m *Manager) maybeFinish(ctx actor.Context) {
	idle := len(m.active) == 0 && len(m.registering) == 0 && len(m.saving) == 0
	if m.draining && idle && m.drainTo != nil {
		ctx.Send(m.drainTo, &messages.Drained{})
		m.drainTo = nil
	}
	if m.ExitOnLastEvent && m.auditDone && !m.finished && idle && len(m.queue) == 0 && m.loadedAll {
		m.finished = true
		var err error
		given := m.stillGivenUp()
		if n := len(given); n > 0 {
			err = fmt.Errorf("sessions: %d session recording(s) given up: %s (sessions list, then retry or drop)", n, strings.Join(given, ", "))
		}
		m.log.Info().Int("given_up", len(given)).Msg("all known session recordings are done")
		ctx.Send(ctx.Parent(), &messages.CaughtUp{Name: Name, Err: err})
	}
}

// stillGivenUp are the recordings given up, in this run or an earlier one,
// and neither retried nor dropped since: a run of --exit-on-last-event
// names them all, as the export walker names every chunk still parked.
func (m *Manager) stillGivenUp() []string {
	ids := slices.Clone(*m.givenUp)
	stored, err := m.Store.GivenUpRecordings()
	if err != nil {
		m.log.Error().Err(err).Msg("cannot list the recordings given up in earlier runs; naming those of this run")
	}
	for _, g := range stored {
		if !slices.Contains(ids, g.Recording.ID) {
			ids = append(ids, g.Recording.ID)
		}
	}
	return ids
}

// retries is the wait before the next attempt of a recording after its
// nth failure in a row: 1 s doubling to a minute, with jitter.
var retries = backoff.Policy{Initial: time.Second, Max: time.Minute, Jitter: true}

func stringField(ev *auditlogpb.EventUnstructured, name string) string {
	return eventwire.Field(ev, name).GetStringValue()
}
