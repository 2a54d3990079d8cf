package export

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/fdfwd/teleport-event-handler/actors/supervisor"
)

// dispatch starts a reader for each queued chunk, up to Concurrency.
func (w *Walker) dispatch(ctx actor.Context) {
	for !w.draining && len(w.queue) > 0 && len(w.running) < w.Concurrency {
		ref := w.queue[0]
		w.queue = w.queue[1:]
		d, since, after := w.Deps, w.st.Since, w.st.AfterID
		props := w.Kit.Props(ReaderKind, func() actor.Actor {
			return &reader{Deps: d, ref: ref, since: since, after: after}
		})
		pid := supervisor.Spawn(ctx, props, ReaderKind)
		w.running[ref.String()] = pid
		w.pids[pid.Id] = ref
	}
}

// release forgets the reader of ref, which has reported its end, and stops
// it; false when no reader runs it.
func (w *Walker) release(ctx actor.Context, ref chunkRef) bool {
	pid := w.running[ref.String()]
	if pid == nil {
		return false
	}
	delete(w.running, ref.String())
	delete(w.pids, pid.Id)
	if !w.draining {
		// While draining the reader still owes its answer to Drain; it
		// stops with the walker.
		ctx.Stop(pid)
	}
	return true
}

func (w *Walker) onChunkDone(ctx actor.Context, m *chunkDone) {
	ref := m.Ref
	if !w.release(ctx, ref) {
		return
	}
	if done, ok := w.done[ref.DayName()]; ok {
		done[ref.Chunk] = true
	}
	w.st.Acked += m.Events
	w.log.Debug().Str("day", ref.DayName()).Str("chunk", ref.Chunk).Uint64("events", m.Events).Msg("chunk exported")
	if w.retried[ref.String()] {
		delete(w.retried, ref.String())
		w.Metrics.ExportChunksParked.Dec()
		w.log.Info().Str("day", ref.DayName()).Str("chunk", ref.Chunk).Msg("parked chunk exported")
	}
	w.idleRound = false
	w.save(ctx)
	w.dispatch(ctx)
	w.next(ctx)
}

func (w *Walker) onChunkParked(ctx actor.Context, m *chunkParked) {
	ref := m.Ref
	if !w.release(ctx, ref) {
		return
	}
	if w.retried[ref.String()] {
		delete(w.retried, ref.String())
	} else {
		w.Metrics.ExportChunksParked.Inc()
	}
	w.parked[ref.String()] = ref
	w.log.Error().Err(m.Err).Str("day", ref.DayName()).Str("chunk", ref.Chunk).Int("failures", m.Attempts).
		Dur("retry_in", w.ParkRetry).Msg("export chunk parked: its remaining events are read again later; the export goes on without it")
	if !w.parkWait.Armed() && !w.draining {
		w.parkWait.After(ctx, w.ParkRetry, &parkTick{})
	}
	w.idleRound = false
	w.dispatch(ctx)
	w.next(ctx)
	w.maybeFinish(ctx)
}

// retryParked queues the parked chunks again.
func (w *Walker) retryParked(ctx actor.Context) {
	if w.draining || w.finished {
		return
	}
	for key, ref := range w.parked {
		w.queue = append(w.queue, ref)
		w.retried[key] = true
		delete(w.parked, key)
	}
	w.idleRound = false
	w.dispatch(ctx)
}

func (w *Walker) onTerminated(who *actor.PID) {
	ref, ok := w.pids[who.Id]
	if !ok || w.stopping {
		return
	}
	// A reader stopped without finishing: it used up its restart budget,
	// or failed for a cause that restarts cannot fix, which stops the
	// walker at once with it (the chunk's position cannot be stored).
	if d, ok := w.Kit.Strategy.GaveUp(who); ok && d.Unrecoverable {
		if cause, isErr := d.Cause.(error); isErr {
			panic(cause)
		}
	}
	panic(fmt.Errorf("export reader of chunk %s stopped", ref))
}
