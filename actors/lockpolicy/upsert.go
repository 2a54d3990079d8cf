package lockpolicy

// The Teleport side of the policy: attempts to write locks, at most
// maxInFlight at once, retried with backoff, and the sweep of what the
// period forgot.

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gravitational/teleport/api/types"
	"github.com/gravitational/trace"

	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// runPending starts the attempts that are due, up to maxInFlight, and sets
// the retry timer for the next one.
func (p *Policy) runPending(ctx actor.Context) {
	now := p.Clock.Now()
	var next time.Time
	for user, a := range p.pending {
		if a.running {
			continue
		}
		s := p.users[user]
		if s == nil || s.Lock == nil || !s.Lock.Pending() {
			delete(p.pending, user)
			continue
		}
		if p.win.expired(s.Lock, now) {
			delete(p.pending, user)
			next := clone(*s)
			next.Lock = nil
			p.save(ctx, next, nil, nil)
			p.log.Warn().Time("expires", s.Lock.Expires).Int("failures", a.failures).
				Msg("the lock expired before teleport accepted it; giving it up")
			continue
		}
		if a.notBefore.After(now) || p.running >= maxInFlight {
			at := now.Add(p.RetryMin) // a slot frees up sooner: onUpserted runs this again
			if a.notBefore.After(now) {
				at = a.notBefore
			}
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		p.upsert(ctx, user, *s.Lock, a)
	}
	p.retry.Stop()
	if !next.IsZero() {
		p.retry.After(ctx, next.Sub(now), &retryTick{})
	}
}

// upsert writes the lock in a goroutine, so that Receive never waits on
// Teleport; the outcome comes back as an upserted message.
func (p *Policy) upsert(ctx actor.Context, user string, l persistence.UserLock, a *attempt) {
	lock, err := p.lock(user, l)
	if err != nil {
		// Only an empty name or target fails, and neither can be.
		panic(fmt.Errorf("build lock of %s: %w", user, err))
	}
	a.running = true
	p.running++
	self, root, epoch, pctx, locker, timeout := ctx.Self(), ctx.ActorSystem().Root, p.epoch, p.ctx, p.Locker, p.CallTimeout
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		cctx, cancel := context.WithTimeout(pctx, timeout)
		err := locker.UpsertLock(cctx, lock)
		cancel()
		root.Send(self, &upserted{epoch: epoch, user: user, trigger: l.Trigger, err: err})
	}()
}

// lock is the Teleport lock for l.
func (p *Policy) lock(user string, l persistence.UserLock) (types.Lock, error) {
	spec := types.LockSpecV2{
		Target:  types.LockTarget{User: user},
		Message: fmt.Sprintf("User is locked due to too many failed login attempts: %d within %s (teleport-event-handler)", l.Count, p.Period),
	}
	if !l.Expires.IsZero() {
		exp := l.Expires.UTC()
		spec.Expires = &exp
	}
	return types.NewLock(LockName(user), spec)
}

func (p *Policy) onUpserted(ctx actor.Context, m *upserted) {
	p.running--
	a := p.pending[m.user]
	s := p.users[m.user]
	if a == nil || s == nil || s.Lock == nil || !s.Lock.Trigger.Equal(m.trigger) {
		// Given up or replaced by a newer lock meanwhile.
		p.runPending(ctx)
		return
	}
	a.running = false
	now := p.Clock.Now()
	if m.err == nil {
		p.Metrics.LocksCreated.Inc() // Teleport has it, whatever happens to our record
		delete(p.pending, m.user)
		next := clone(*s)
		next.Lock.Written = now
		p.save(ctx, next, nil, nil)
		p.log.Debug().Str("user", logName(m.user)).Str("lock", logName(LockName(m.user))).Msg("the user of the lock below")
		lg := p.log.Info().Int("failures", a.failures)
		if p.denied {
			p.denied = false
			lg.Msg("teleport accepted the lock: the lock permission is granted now")
		} else {
			lg.Msg("user locked")
		}
		p.runPending(ctx)
		return
	}
	a.failures++
	p.Metrics.TeleportErrors.WithLabelValues("UpsertLock", metrics.ErrorKind(m.err)).Inc()
	var wait time.Duration
	switch {
	case trace.IsAccessDenied(m.err):
		wait = p.DeniedRetry
		if !p.denied {
			p.denied = true
			p.log.Error().Err(m.err).Dur("retry_every", wait).
				Msg("teleport denied writing a lock: the role of the event handler's identity needs the lock resource with verbs create and update; " +
					"add the rule {resources: [lock], verbs: [create, update]} to it (locks are kept and retried until then)")
		} else {
			p.log.Debug().Err(m.err).Str("user", logName(m.user)).Msg("lock still denied")
		}
	default:
		wait = p.retries().Delay(a.failures)
		p.log.Warn().Err(m.err).Int("failures", a.failures).Dur("retry_in", wait).
			Msg("writing the lock failed; retrying")
	}
	a.notBefore = now.Add(wait)
	p.runPending(ctx)
}

// retries is the wait after the nth failed attempt: RetryMin doubling up
// to RetryMax, with jitter so that many pending locks do not retry at once.
func (p *Policy) retries() backoff.Policy {
	return backoff.Policy{Initial: p.RetryMin, Max: p.RetryMax, Jitter: true}
}

// onSweep forgets what no longer matters and schedules the next sweep.
func (p *Policy) onSweep(ctx actor.Context) {
	now := p.Clock.Now()
	for _, s := range p.users {
		next := clone(*s)
		if p.win.Prune(&next, now) {
			p.save(ctx, next, nil, nil)
		}
	}
	p.sweep.After(ctx, max(p.Period, time.Minute), &sweepTick{})
}
