// Package lockpolicy locks Teleport users who fail to log in too often: a tap
// of the poller counts failed user.login events per Teleport user in a
// sliding window of event time (see Window) and writes a Teleport lock with
// UpsertLock once a user reaches the count.
//
// Everything it decides is durable before it answers the poller: counters
// survive a restart, and a lock is first recorded as pending in the store,
// then written to Teleport, retried with backoff until Teleport accepts it,
// also after a restart. The poller's checkpoint therefore never waits for
// Teleport to accept a lock: a missing permission or an outage of the lock
// API does not stall the audit stream to Fluentd.
package lockpolicy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/eventwire"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Name is the lock policy's name under the root.
const Name = "lockpolicy"

// LoginEvent is the audit event type of a login attempt.
const LoginEvent = "user.login"

// LockPrefix starts the name of every lock the policy writes.
const LockPrefix = "event-handler-auto-lock-"

// LockName is the name of the lock of user.
func LockName(user string) string { return LockPrefix + user }

// Locker is the Teleport API call the policy uses; *client.Client has it.
type Locker interface {
	UpsertLock(ctx context.Context, lock types.Lock) error
}

// Config is the policy (--lock-failed-attempts-count, --lock-period,
// --lock-for).
type Config struct {
	FailedAttempts int
	Period         time.Duration
	For            time.Duration // zero: locks never expire
	// Exempt users are never locked (break-glass administrators, bots):
	// their failures are not counted.
	Exempt map[string]bool
	// MaxLocks caps the locks decided within Period (by their triggering
	// failure's time); beyond it the daemon logs and counts instead of
	// locking: a mass lock-out is an incident, not a policy. Zero: no cap.
	MaxLocks int
}

// Deps configure the policy.
type Deps struct {
	Locker Locker // unused with DryRun
	// Store keeps the counters and locks; the policy reads it at start and
	// writes it through Checkpoint, the checkpoint writer, which commits the
	// counters of many failed logins in one fsync'd transaction (a
	// brute-force burst does not cost an fsync per failure).
	Store      *persistence.Store
	Checkpoint *actor.PID
	Config
	// DryRun logs the locks that would be written and writes none.
	DryRun bool

	// RetryMin and RetryMax bound the backoff between attempts to write a
	// lock; DeniedRetry is the wait after Teleport denied it (the role may
	// be fixed while the daemon runs); CallTimeout bounds one attempt.
	RetryMin, RetryMax time.Duration
	DeniedRetry        time.Duration
	CallTimeout        time.Duration

	Clock   clockwork.Clock
	Log     zerolog.Logger
	Metrics *metrics.Metrics // nil: private ones
	Kit     supervisor.Kit
}

// Defaults for the Deps fields left zero (upstream's, for the policy).
const (
	DefaultFailedAttempts = 3
	DefaultPeriod         = time.Minute
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = time.Minute
	DefaultDeniedRetry    = 5 * time.Minute
	DefaultCallTimeout    = 30 * time.Second
)

// maxInFlight bounds concurrent UpsertLock calls.
const maxInFlight = 4

// Wants tells the poller which audit events the policy observes: failed
// logins. An event without a boolean success field is not a failure.
func Wants(ev *auditlogpb.EventUnstructured) bool {
	if ev.GetType() != LoginEvent {
		return false
	}
	v, ok := eventwire.Field(ev, "success").GetKind().(*structpb.Value_BoolValue)
	return ok && !v.BoolValue
}

// Props returns the policy's props, made by d.Kit.
func Props(d Deps) *actor.Props {
	return d.Kit.Props(Name, func() actor.Actor { return New(d) })
}

// New returns a policy; spawn it with actor.PropsFromProducer.
func New(d Deps) *Policy {
	if d.FailedAttempts <= 0 {
		d.FailedAttempts = DefaultFailedAttempts
	}
	if d.Period <= 0 {
		d.Period = DefaultPeriod
	}
	d.Clock = timer.Or(d.Clock)
	if d.RetryMin <= 0 {
		d.RetryMin = DefaultRetryMin
	}
	if d.RetryMax < d.RetryMin {
		d.RetryMax = max(DefaultRetryMax, d.RetryMin)
	}
	if d.DeniedRetry <= 0 {
		d.DeniedRetry = DefaultDeniedRetry
	}
	if d.CallTimeout <= 0 {
		d.CallTimeout = DefaultCallTimeout
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	return &Policy{Deps: d, win: Window{Count: d.FailedAttempts, Period: d.Period, For: d.For},
		retry: timer.Timer{Clock: d.Clock}, sweep: timer.Timer{Clock: d.Clock}}
}

// Policy is the actor.
type Policy struct {
	Deps
	win   Window
	log   zerolog.Logger
	epoch messages.Epoch

	users   map[string]*persistence.LockState
	pending map[string]*attempt // users whose lock is to be written
	running int
	retry   timer.Timer // until the next pending lock is due
	sweep   timer.Timer // until old failures are forgotten

	// Attempts in flight run under ctx and are waited for when the actor
	// stops or restarts.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// denied is set once Teleport refused a lock for lack of permission:
	// the error is logged once, and once more when a lock gets through.
	denied bool

	// saveSeq numbers this incarnation's saves; onDisk holds, by save key,
	// what waits for a save to be on disk (the answer to an Observe, the
	// start of a lock's writing), with the seq of its save.
	saveSeq uint64
	onDisk  map[string][]waiter
	keyUser map[string]keyed // save key -> whose, until its last save is settled
}

// waiter is what runs once save seq of its key is on disk: then, and
// answer (either may be nil). A save that can never be written runs answer
// only: the failure is forwarded all the same, just not counted.
type keyed struct {
	user string
	seq  uint64 // of the last save under the key
}

type waiter struct {
	seq          uint64
	then, answer func()
}

type attempt struct {
	failures  int
	notBefore time.Time
	running   bool
}

type upserted struct {
	epoch   messages.Epoch
	user    string
	trigger time.Time
	err     error
}

type retryTick struct{}

type sweepTick struct{}

// Receive implements actor.Actor.
func (p *Policy) Receive(ctx actor.Context) {
	switch m := supervisor.Fault(timer.Message(ctx), Name).(type) {
	case *actor.Started:
		p.start(ctx)
	case *messages.Observe:
		p.observe(ctx, m)
	case *messages.Saved:
		if m.Epoch == p.epoch {
			p.saved(m)
		}
	case *messages.SaveFailed:
		if m.Epoch == p.epoch {
			p.saveFailed(m)
		}
	case *upserted:
		if m.epoch == p.epoch {
			p.onUpserted(ctx, m)
		}
	case *retryTick:
		p.runPending(ctx)
	case *sweepTick:
		p.onSweep(ctx)
	case *messages.Drain:
		// Nothing in flight needs settling: pending locks are durable and
		// written on the next start.
		ctx.Respond(&messages.Drained{})
	case *messages.CaughtUp:
		// Not a finishing child: locks being retried go on until stopped.
	case *actor.Stopping, *actor.Restarting:
		p.stop()
	}
}

func (p *Policy) start(ctx actor.Context) {
	p.epoch = messages.NewEpoch()
	p.log = p.Log.With().Str("actor", Name).Logger()
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.users = map[string]*persistence.LockState{}
	p.pending = map[string]*attempt{}
	p.onDisk = map[string][]waiter{}
	p.keyUser = map[string]keyed{}
	states, err := p.Store.LockStates()
	if err != nil {
		panic(fmt.Errorf("load lock policy state: %w", err))
	}
	for i := range states {
		s := &states[i]
		p.users[s.User] = s
		if s.Lock != nil && s.Lock.Pending() {
			p.pending[s.User] = &attempt{}
		}
	}
	if n := len(p.pending); n > 0 {
		p.log.Info().Int("locks", n).Msg("resuming locks not yet written to teleport")
	}
	// The poller sends again what a previous incarnation may have lost.
	ctx.ActorSystem().EventStream.Publish(&messages.TapStarted{PID: ctx.Self()})
	p.onSweep(ctx)
	p.runPending(ctx)
}

func (p *Policy) stop() {
	p.retry.Stop()
	p.sweep.Stop()
	if p.cancel != nil {
		p.cancel()
		p.wg.Wait() // attempts end promptly once cancelled
	}
}

// observe counts a failed login and answers once the count is on disk (a
// lock it completes is on disk as pending).
func (p *Policy) observe(ctx actor.Context, o *messages.Observe) {
	self := ctx.Self()
	answer := func() { ctx.Send(o.ReplyTo, &messages.Observed{Epoch: o.Epoch, Seq: o.Seq, Tap: self}) }
	if !p.count(ctx, o.Event, answer) {
		answer() // nothing to write
	}
}

// countable reports whether the failed login of user can be counted; a
// name longer than persistence.MaxUserName is no account's (see there).
func (p *Policy) countable(ev *auditlogpb.EventUnstructured, user string) bool {
	if len(user) <= persistence.MaxUserName {
		return true
	}
	p.Metrics.LockFailuresIgnored.WithLabelValues("user_name_too_long").Inc()
	p.log.Debug().Str("user", logName(user)).Msg("the user of the failed login below")
	p.log.Warn().Str("event_id", logName(ev.GetId())).Int("user_bytes", len(user)).
		Msg("failed login whose user name is longer than any account's (over 1024 bytes); not counted (the event is forwarded as any other)")
	return false
}

// count counts a failed login. It returns false when there is nothing to
// write; else it saves the new state and runs answer once it is on disk
// (after marking the lock the failure completes, if any, to be written).
func (p *Policy) count(ctx actor.Context, ev *auditlogpb.EventUnstructured, answer func()) bool {
	if !Wants(ev) {
		return false // only failed logins count, whatever is handed over
	}
	user := stringField(ev, "user")
	t, ok := eventTime(ev)
	if user == "" || !ok {
		p.log.Warn().Str("event_id", ev.GetId()).Msg("failed login event without a user or a time; not counted")
		return false
	}
	f := persistence.LoginFailure{ID: ev.GetId(), Time: t}
	if f.ID == "" {
		f.ID = stringField(ev, "uid")
	}
	if f.ID == "" {
		f.ID = t.Format(time.RFC3339Nano) // Teleport always sets one; this still makes replays count once
	}
	if !p.countable(ev, user) {
		return false
	}
	if p.Exempt[user] {
		p.log.Debug().Str("user", logName(user)).Str("event_id", logName(f.ID)).Msg("failed login of a user exempt from locking (--lock-exempt-users); not counted")
		return false
	}
	now := p.Clock.Now()
	s := p.users[user]
	if s == nil {
		s = &persistence.LockState{User: user}
	}
	next := clone(*s)
	v := p.win.Add(&next, f, now)
	if v == Ignored {
		p.log.Debug().Str("user", logName(user)).Str("event_id", logName(f.ID)).Msg("failed login replayed, accounted for by our lock, or too old to matter")
		return false
	}
	if v != Lock {
		p.log.Debug().Str("user", logName(user)).Str("event_id", logName(f.ID)).Time("event_time", t).Stringer("verdict", v).
			Int("failures", len(next.Failures)).Msg("failed login counted")
		p.save(ctx, next, nil, answer)
		return true
	}
	if p.capped(now) {
		p.Metrics.LocksCapped.Inc()
		p.log.Debug().Str("user", logName(user)).Msg("the user of the lock below")
		p.log.Error().Int("max", p.MaxLocks).Dur("period", p.Period).
			Msg("not locking: --lock-max-per-period locks were decided within --lock-period already; so many failed logins of different users is an incident for people, not for the lock policy")
		next.Lock = nil // counted; a later failure tries again
		p.save(ctx, next, nil, answer)
		return true
	}
	if p.DryRun {
		next.Lock.Written = now // nothing to write: remember it as done
	}
	p.save(ctx, next, func() { p.locking(ctx, user, *next.Lock) }, answer)
	return true
}

// capped reports whether MaxLocks locks were decided within the last
// Period (by the time of the failure that triggered each).
func (p *Policy) capped(now time.Time) bool {
	if p.MaxLocks <= 0 {
		return false
	}
	n := 0
	for _, s := range p.users {
		if s.Lock != nil && s.Lock.Trigger.After(now.Add(-p.Period)) {
			n++
		}
	}
	return n >= p.MaxLocks
}

// locking starts writing the lock l of user to Teleport, now that it is on
// disk as pending (with --dry-run, logs it).
func (p *Policy) locking(ctx actor.Context, user string, l persistence.UserLock) {
	// User names at debug only: a mistyped password often lands in the
	// user field of a failed login.
	p.log.Debug().Str("user", logName(user)).Str("lock", logName(LockName(user))).Msg("the user of the lock below")
	lg := p.log.Info().Int("failures", l.Count).Dur("period", p.Period).Time("trigger", l.Trigger)
	if !l.Expires.IsZero() {
		lg = lg.Time("expires", l.Expires) // absent: the lock never expires
	}
	if p.DryRun {
		lg.Msg("dry run: would lock user for too many failed logins")
		return
	}
	lg.Msg("locking user for too many failed logins")
	p.pending[user] = &attempt{}
	p.runPending(ctx)
}

// save makes s its user's state in memory at once, and writes it through
// the checkpoint writer, which commits the states of many users, and
// coalesces those of one, in each fsync'd transaction; then runs then and
// answer (if not nil) once it is on disk. A failed write is the writer's
// to retry; if this actor restarts meanwhile, it reloads the store and the
// poller hands it again the failures it did not answer.
func (p *Policy) save(ctx actor.Context, s persistence.LockState, then, answer func()) {
	if s.Empty() {
		delete(p.users, s.User)
	} else {
		p.users[s.User] = &s
	}
	key := saveKey(s.User)
	p.saveSeq++
	p.keyUser[key] = keyed{user: s.User, seq: p.saveSeq}
	if then != nil || answer != nil {
		p.onDisk[key] = append(p.onDisk[key], waiter{seq: p.saveSeq, then: then, answer: answer})
	}
	ctx.Send(p.Checkpoint, &messages.Save{Key: key, Epoch: p.epoch, Seq: p.saveSeq,
		Writes: []kv.Write{persistence.LockStateWrite(s)}, ReplyTo: ctx.Self()})
}

// saveKey is the checkpoint key of user's state: bounded, as the state
// file's key is (persistence.LockKey).
func saveKey(user string) string { return "lock/" + persistence.LockKey(user) }

// logName is a user name (or an event ID) as log lines carry it: cut short,
// since it is whatever was typed at the login prompt.
func logName(s string) string { return persistence.Cut(s, 128) }

// saved runs what waited for the saves of m.Key up to m.Seq.
func (p *Policy) saved(m *messages.Saved) {
	for _, w := range p.settled(m.Key, m.Seq) {
		if w.then != nil {
			w.then()
		}
		if w.answer != nil {
			w.answer()
		}
	}
}

// saveFailed handles a save that can never be written: the user's state
// goes back to what is on disk, and the failures that waited are answered
// uncounted, so that the audit stream goes on (never stalled by the lock
// policy's bookkeeping).
func (p *Policy) saveFailed(m *messages.SaveFailed) {
	user := p.keyUser[m.Key].user
	p.log.Debug().Str("user", logName(user)).Msg("the user of the error below")
	p.log.Error().Err(m.Err).Msg("the lock policy's state of a user cannot be stored; failed logins that waited for it are not counted (the events are forwarded all the same)")
	st, ok, err := p.Store.LockState(user)
	switch {
	case err != nil:
		panic(fmt.Errorf("reload the lock state: %w", err))
	case ok:
		p.users[user] = &st
	default:
		delete(p.users, user)
	}
	for _, w := range p.settled(m.Key, m.Seq) {
		if w.answer != nil {
			p.Metrics.LockFailuresIgnored.WithLabelValues("unwritable").Inc()
			w.answer()
		}
	}
}

// settled takes the waiters of key's saves up to seq.
func (p *Policy) settled(key string, seq uint64) []waiter {
	if p.keyUser[key].seq <= seq {
		delete(p.keyUser, key)
	}
	ws := p.onDisk[key]
	n := 0
	for n < len(ws) && ws[n].seq <= seq {
		n++
	}
	if n == len(ws) {
		delete(p.onDisk, key)
	} else {
		p.onDisk[key] = ws[n:]
	}
	return ws[:n]
}

func clone(s persistence.LockState) persistence.LockState {
	s.Failures = append([]persistence.LoginFailure(nil), s.Failures...)
	if s.Lock != nil {
		l := *s.Lock
		s.Lock = &l
	}
	return s
}

func stringField(ev *auditlogpb.EventUnstructured, name string) string {
	return eventwire.Field(ev, name).GetStringValue()
}

// eventTime is the event's time, from its envelope or its time field.
func eventTime(ev *auditlogpb.EventUnstructured) (time.Time, bool) {
	if ts := ev.GetTime(); ts != nil && (ts.GetSeconds() != 0 || ts.GetNanos() != 0) {
		return ts.AsTime(), true
	}
	t, err := time.Parse(time.RFC3339Nano, stringField(ev, "time"))
	return t, err == nil
}
