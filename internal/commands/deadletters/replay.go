package deadletters

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// replayGroup is how many letters are in flight before the confirmed ones
// are taken out of the file: a crash during a replay resends at most these.
const replayGroup = 100

// Result sums up a replay.
type Result struct {
	Replayed int // confirmed by Fluentd and removed from the file
	Kept     int // rejected again for good: still letters
	Left     int // not tried, or still retrying, when the replay was stopped
	// Unreadable are the lines of the file that are not letters: not
	// sent, and kept in the file (each is logged with its number).
	Unreadable int
}

// Body is what a letter is sent again as: its event's JSON, or what the
// URL's protocol takes (a syslog message made of it). An error keeps the
// letter.
type Body func(persistence.DeadLetter) ([]byte, error)

// LetterJSON is the Body of a letter sent as it is kept: its JSON.
func LetterJSON(l persistence.DeadLetter) ([]byte, error) { return l.Event, nil }

// Replay sends every letter again to its URL with t, over up to conns
// connections, with the daemon's rules: the receiver's 2xx (a forward ack,
// a RELP rsp 200) confirms a letter, which is then removed from the file;
// a rejection for good keeps it, as does an event still too large for the
// receiver; anything else is retried with the same backoff until it is
// confirmed or rejected, or ctx ends (what is left stays a letter).
func Replay(ctx context.Context, dir string, t wire.Transport, conns int, body Body, log zerolog.Logger) (Result, error) {
	store, err := exclusive(dir)
	if err != nil {
		return Result{}, err
	}
	defer store.Close()
	d := persistence.NewDeadLetters(dir)
	letters, bad, err := d.Letters()
	if err != nil {
		return Result{}, err
	}
	for _, b := range bad {
		log.Warn().Str("file", d.Path()).Int("line", b.Line).Str("reason", b.String()).
			Msg("bytes of the dead-letter file that are not a letter are not sent: they stay in the file for you to repair or remove")
	}
	res := Result{Unreadable: len(bad)}
	for start := 0; start < len(letters); start += replayGroup {
		group := letters[start:min(start+replayGroup, len(letters))]
		confirmed, kept := sendGroup(ctx, t, max(conns, 1), group, body, log)
		if _, err := d.Remove(confirmed); err != nil {
			return res, err
		}
		res.Replayed += len(confirmed)
		res.Kept += kept
		if ctx.Err() != nil {
			res.Left = len(letters) - res.Replayed - res.Kept
			return res, nil
		}
	}
	return res, nil
}

// sendGroup sends the letters over conns senders and returns the keys of
// those confirmed and the number rejected again.
func sendGroup(ctx context.Context, t wire.Transport, conns int, group []persistence.DeadLetter, body Body, log zerolog.Logger) ([]string, int) {
	var (
		mu        sync.Mutex
		confirmed []string
		kept      int
		wg        sync.WaitGroup
	)
	next := make(chan persistence.DeadLetter)
	for range min(conns, len(group)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := t.NewSender()
			defer s.Close()
			for l := range next {
				switch send(ctx, s, l, body, log) {
				case wire.Success:
					mu.Lock()
					confirmed = append(confirmed, persistence.LetterKey(l.URL, l.EventID, l.Event))
					mu.Unlock()
				case wire.Permanent:
					mu.Lock()
					kept++
					mu.Unlock()
				}
			}
		}()
	}
	for _, l := range group {
		if ctx.Err() != nil {
			break
		}
		next <- l
	}
	close(next)
	wg.Wait()
	return confirmed, kept
}

// send tries one letter until it is confirmed or rejected for good, or ctx
// ends (Retry then).
func send(ctx context.Context, s wire.Sender, l persistence.DeadLetter, body Body, log zerolog.Logger) wire.Class {
	b, err := body(l)
	if err != nil {
		log.Warn().Str("event_id", l.EventID).Str("url", l.URL).Err(err).
			Msg("the dead letter cannot be made into what its URL takes; it stays in the dead-letter file")
		return wire.Permanent
	}
	for attempt := 1; ; attempt++ {
		res := s.Send(ctx, l.URL, [][]byte{b})
		switch res.Class {
		case wire.Success:
			return wire.Success
		case wire.Permanent, wire.TooLarge: // too large alone: it never fits
			log.Warn().Str("event_id", l.EventID).Str("url", l.URL).Int("status", res.Status).Str("reason", res.Reason).
				Msg("fluentd rejected the event again; it stays in the dead-letter file")
			return wire.Permanent
		}
		delay := wire.RetryDelay(attempt, res.RetryAfter)
		log.Error().Str("event_id", l.EventID).Str("url", l.URL).Int("status", res.Status).Str("reason", res.Reason).
			Int("failures", attempt).Dur("retry_in", delay).Msg("replaying a dead letter failed; retrying")
		select {
		case <-ctx.Done():
			return wire.Retry
		case <-time.After(delay):
		}
	}
}
