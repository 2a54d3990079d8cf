// Package checkpoint is the single writer of the state file.
//
// Saves are coalesced per key (group commit): while one fsync'd transaction
// runs, newer saves pile up in the mailbox and the next transaction writes
// only the newest of each key. Transactions start at most every Interval: a
// save to an idle writer is written at once, but under load saves gather for
// up to Interval, so that a busy pipeline pays a few fsyncs a second rather
// than one per message. A failed write (disk full, read-only file) is
// kept and retried with backoff, so nothing confirmed is ever forgotten;
// requesters simply wait longer for Saved.
//
// A save that can never be written (persistence.Unwritable: a key too large
// for bbolt, a record that does not encode) must not hold up the others by
// failing their group commit for ever: it is taken out, its requester gets
// SaveFailed, and the rest commit.
package checkpoint

import (
	"errors"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
	"github.com/fdfwd/teleport-event-handler/actors/timer"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/messages"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// Name is the actor's name under the root.
const Name = "checkpoint"

// DefaultInterval is the least time between the starts of two transactions.
const DefaultInterval = 10 * time.Millisecond

type flush struct{}

// retries is the wait after failed writes in a row.
var retries = backoff.Policy{Initial: 100 * time.Millisecond, Max: 30 * time.Second}

// queue holds the saves not yet written. It lives outside the actor instance
// so that a restart by the supervisor keeps them.
type queue struct {
	pending map[string]*messages.Save
	order   []string // keys in arrival order, for deterministic writes
}

// Store is where the writer commits: *persistence.Store, or a fake in tests.
type Store interface {
	Apply([]kv.Write) error
}

// Writer is the checkpoint actor.
type Writer struct {
	store   Store
	log     zerolog.Logger
	metrics *metrics.Metrics

	*queue    // survives restarts: confirmed positions are never dropped
	scheduled bool
	failures  int
	wait      timer.Timer // until the next transaction may start
	interval  time.Duration
	lastStart time.Time // of the last transaction
}

// Deps configure the writer.
type Deps struct {
	Store Store
	// Interval is the least time between the starts of two transactions
	// (DefaultInterval when zero; negative: one starts as soon as the
	// previous one ends).
	Interval time.Duration
	Clock    clockwork.Clock
	Log      zerolog.Logger
	Metrics  *metrics.Metrics // nil: private ones
	Kit      supervisor.Kit
}

// Props returns the props of the writer.
func Props(d Deps) *actor.Props {
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	if d.Interval == 0 {
		d.Interval = DefaultInterval
	}
	d.Clock = timer.Or(d.Clock)
	q := &queue{pending: map[string]*messages.Save{}}
	log := d.Log.With().Str("actor", Name).Logger()
	return d.Kit.Props(Name, func() actor.Actor {
		return &Writer{store: d.Store, log: log, queue: q, metrics: d.Metrics, interval: max(d.Interval, 0),
			wait: timer.Timer{Clock: d.Clock}}
	})
}

// Receive implements actor.Actor.
func (w *Writer) Receive(ctx actor.Context) {
	switch m := timer.Message(ctx).(type) {
	case *actor.Started:
		if len(w.pending) > 0 { // left by a previous incarnation
			w.scheduled = true
			ctx.Send(ctx.Self(), &flush{})
		}
	case *messages.Save:
		if _, ok := w.pending[m.Key]; !ok {
			w.order = append(w.order, m.Key)
		}
		w.pending[m.Key] = m
		w.metrics.Health.CheckpointPending()
		if !w.scheduled {
			w.scheduled = true
			if wait := w.lastStart.Add(w.interval).Sub(w.wait.Clock.Now()); wait > 0 {
				w.wait.After(ctx, wait, &flush{})
			} else {
				ctx.Send(ctx.Self(), &flush{})
			}
		}
	case *flush:
		w.flush(ctx)
	case *actor.Stopping:
		// Last chance: whatever was confirmed gets written.
		w.wait.Stop()
		if len(w.pending) > 0 {
			if err := w.commit(ctx); err != nil {
				w.log.Error().Err(err).Msg("final checkpoint write failed; the next start resends events since the previous checkpoint")
			}
		}
	case *actor.Restarting:
		w.wait.Stop()
	}
}

func (w *Writer) flush(ctx actor.Context) {
	w.scheduled = false
	if len(w.pending) == 0 {
		return
	}
	if err := w.commit(ctx); err != nil {
		w.failures++
		delay := retries.Delay(w.failures)
		w.log.Error().Err(err).Dur("retry_in", delay).Int("failures", w.failures).Msg("checkpoint write failed; delivery pauses until it succeeds")
		w.scheduled = true
		w.wait.After(ctx, delay, &flush{})
		return
	}
	if w.failures > 0 {
		w.log.Info().Int("failures", w.failures).Msg("checkpoint writes recovered")
		w.failures = 0
	}
}

// commit writes the pending saves but those that can never be written,
// which fail. An error is one worth retrying.
func (w *Writer) commit(ctx actor.Context) error {
	w.refuse(ctx)
	if len(w.pending) == 0 {
		return nil
	}
	err := w.write(ctx)
	if persistence.Unwritable(err) {
		// Something the checks before did not see (a key where a bucket
		// is): one transaction per save finds it.
		err = w.isolate(ctx)
	}
	return err
}

// refuse fails the pending saves that carry a write that can never be
// applied, so that the group commit holds only what can succeed.
func (w *Writer) refuse(ctx actor.Context) {
	for _, k := range w.order {
		for _, wr := range w.pending[k].Writes {
			if err := persistence.CheckWrite(wr); err != nil {
				w.fail(ctx, k, err)
				break
			}
		}
	}
	w.compact()
}

// isolate writes the pending saves one transaction each: those that can
// never be written fail, the others commit. It stops at the first other
// error, which the caller retries with what is left.
func (w *Writer) isolate(ctx actor.Context) error {
	defer w.compact()
	for _, k := range w.order {
		s := w.pending[k]
		if s == nil {
			continue
		}
		err := w.store.Apply(s.Writes)
		switch {
		case err == nil:
			w.metrics.CheckpointWrites.WithLabelValues("ok").Inc()
			w.saved(ctx, s)
			delete(w.pending, k)
		case persistence.Unwritable(err):
			w.fail(ctx, k, err)
		default:
			return err
		}
	}
	w.metrics.Health.CheckpointWritten()
	return nil
}

// fail drops the save of key k and answers its requester with SaveFailed.
func (w *Writer) fail(ctx actor.Context, k string, err error) {
	s := w.pending[k]
	delete(w.pending, k)
	if u := (*persistence.UnwritableError)(nil); !errors.As(err, &u) {
		err = &persistence.UnwritableError{Key: persistence.Cut(k, 64), Err: err} // Unrecoverable for the requester
	}
	w.metrics.CheckpointWrites.WithLabelValues("unwritable").Inc()
	w.log.Error().Err(err).Str("key", persistence.Cut(k, 64)).
		Msg("a checkpoint save can never be written; it is dropped and its stream told, the other saves go on")
	if s.ReplyTo != nil {
		ctx.Send(s.ReplyTo, &messages.SaveFailed{Key: s.Key, Epoch: s.Epoch, Seq: s.Seq, Err: err})
	}
}

// compact drops from order the keys no longer pending.
func (w *Writer) compact() {
	w.order = slices.DeleteFunc(w.order, func(k string) bool { return w.pending[k] == nil })
}

func (w *Writer) saved(ctx actor.Context, s *messages.Save) {
	if s.ReplyTo != nil {
		ctx.Send(s.ReplyTo, &messages.Saved{Key: s.Key, Epoch: s.Epoch, Seq: s.Seq})
	}
}

func (w *Writer) write(ctx actor.Context) error {
	var writes []kv.Write
	for _, k := range w.order {
		writes = append(writes, w.pending[k].Writes...)
	}
	w.lastStart = w.wait.Clock.Now()
	start := time.Now()            // the transaction's own time, for the metrics
	supervisor.Fault(writes, Name) // as if the write failed
	err := w.store.Apply(writes)
	w.metrics.CheckpointDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		w.metrics.CheckpointWrites.WithLabelValues("error").Inc()
		return err
	}
	w.metrics.CheckpointWrites.WithLabelValues("ok").Inc()
	w.metrics.Health.CheckpointWritten()
	w.log.Trace().Int("keys", len(w.order)).Dur("took", time.Since(start)).Msg("checkpoint written")
	for _, k := range w.order {
		w.saved(ctx, w.pending[k])
	}
	clear(w.pending)
	w.order = w.order[:0]
	return nil
}
