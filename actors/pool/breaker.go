package pool

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/messages"
)

// BreakerRun is how many distinct events in a row a receiver may reject
// for good, on one endpoint (scheme, host and port: one Fluentd source, the
// audit URL's and the recordings' alike) and with no success between,
// before the rejections are taken as the receiver's (a source that cannot
// parse any event) rather than the events': the endpoint's breaker then
// opens.
const BreakerRun = 10

// breakers tell a stream of bad events from a receiver that rejects every
// event, per endpoint. A rejection among accepted events dead-letters the
// event, as always. When a run of BreakerRun distinct events is rejected
// with no success between, the endpoint's breaker opens: nothing more is
// dead-lettered, the run's letters are taken back (queued again behind what
// waits, and removed from the dead-letter file once accepted), and the pool
// sends one job at a time to the endpoint, a probe, oldest first. A probe
// rejected goes to the back of the queue and the next one waits a backoff,
// so that the probes go round the events held: a run of genuinely bad
// events does not hold the good ones back for ever. The first success on the endpoint closes the breaker; a
// letter taken back that is rejected again then is a bad event after all,
// and stays in the file.
//
// Like the queue, breakers outlive the pool's restarts; the connections use
// them concurrently.
type breakers struct {
	mu         sync.Mutex
	byEndpoint map[string]*breaker
	// takenBack are the deliveries taken back out of the dead-letter file
	// and not yet accepted: they have no requester waiting (it was answered
	// when they were dead-lettered).
	takenBack map[*messages.Delivery]bool
	// owed are, by letter key, the events taken back: their letters are in
	// the file, marked, until accepted (see owed.go).
	owed map[string]*owedEvent
	// accepts counts the messages each endpoint accepted, for ever: a
	// message left unanswered while the count moves is the message's
	// problem, not the endpoint's (see noack.go).
	accepts map[string]uint64
	// unansweredAt is, by endpoint, the size (the events' bytes) of the
	// smallest message left unanswered while the endpoint accepted others:
	// the receiver's limit is below it, and later batches are sent in
	// messages smaller than that (see noack.go).
	unansweredAt map[string]int
}

// breaker is the state of one endpoint since its last success there.
type breaker struct {
	rejected map[string]bool             // distinct events rejected in the run
	writing  map[*messages.Delivery]bool // their letters being written
	letters  []*messages.Delivery        // their letters on disk
	open     bool
	cause    string    // for readiness and logs, while open
	probes   int       // rejected while open
	probeAt  time.Time // no probe before
}

func newBreakers() *breakers {
	return &breakers{byEndpoint: map[string]*breaker{}, takenBack: map[*messages.Delivery]bool{}, accepts: map[string]uint64{}, owed: map[string]*owedEvent{},
		unansweredAt: map[string]int{}}
}

func (b *breakers) get(url string) *breaker {
	br := b.byEndpoint[endpoint(url)]
	if br == nil {
		br = &breaker{rejected: map[string]bool{}, writing: map[*messages.Delivery]bool{}}
		b.byEndpoint[endpoint(url)] = br
	}
	return br
}

// endpoint is the scheme, host and port of url: what one Fluentd source
// listens on.
func endpoint(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	host, _, _ := strings.Cut(rest, "/")
	return scheme + "://" + host
}

// isOpen reports whether the breaker of url's endpoint is open.
func (b *breakers) isOpen(url string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.byEndpoint[endpoint(url)]
	return br != nil && br.open
}

// reject counts a rejection for good of d, sent alone, with status and
// reason. It returns open when the event is to be held rather than
// dead-lettered (the breaker is open, or this rejection opened it), and
// the letters to take back when it just opened. Otherwise the caller
// writes d's letter, then calls lettered (or unreject if it failed).
func (b *breakers) reject(d *messages.Delivery, status int, reason string) (open bool, takeBack []*messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(d.URL)
	if br.open {
		return true, nil
	}
	br.rejected[eventKey(d)] = true
	if len(br.rejected) < BreakerRun {
		br.writing[d] = true
		return false, nil
	}
	br.open, br.cause = true, likelyCause(d.URL, status, reason)
	for _, l := range br.letters {
		takeBack = append(takeBack, b.takeBack(l))
	}
	br.letters = nil // those still being written are taken back by lettered
	return true, takeBack
}

// takeBack returns the copy of d, without a requester, that is sent again;
// mu must be held.
func (b *breakers) takeBack(d *messages.Delivery) *messages.Delivery {
	cp := *d
	cp.ReplyTo = nil
	b.takenBack[&cp] = true
	b.owe(&cp)
	return &cp
}

// unreject forgets d's rejection: its dead letter could not be written, so
// it is retried instead.
func (b *breakers) unreject(d *messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(d.URL)
	delete(br.rejected, eventKey(d))
	delete(br.writing, d)
}

// lettered records that d's letter is on disk, and returns the copy of d
// to send again when the breaker opened while it was being written (nil
// otherwise): only a letter on disk is taken back, so that its removal
// finds it.
func (b *breakers) lettered(d *messages.Delivery) *messages.Delivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(d.URL)
	delete(br.writing, d)
	if br.open {
		return b.takeBack(d)
	}
	br.letters = append(br.letters, d)
	return nil
}

// probeFailed records an event rejected while the breaker is open and
// returns when the next probe may go: after a backoff if it was a probe;
// the jobs that were out when the breaker opened do not add to it.
func (b *breakers) probeFailed(url string, now time.Time, probe bool) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(url)
	if probe {
		br.probes++
		br.probeAt = now.Add(wire.RetryDelay(br.probes, 0))
	}
	return br.probeAt
}

// waitsForProbe reports whether the breaker of url's endpoint is open,
// and until when no probe may go (zero: one may now).
func (b *breakers) waitsForProbe(url string, now time.Time) (open bool, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.byEndpoint[endpoint(url)]
	if br == nil || !br.open {
		return false, time.Time{}
	}
	if br.probeAt.After(now) {
		return true, br.probeAt
	}
	return true, time.Time{}
}

// relettered records that d, a delivery taken back, was rejected for good
// again with its breaker closed: it is a bad event after all, and its
// letter, still in the file, stays there. It returns the deliveries of the
// same event that waited for it (see join).
func (b *breakers) relettered(d *messages.Delivery) (waiters []*messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.takenBack, d)
	return b.settleOwed(d, false)
}

// accepted records a success on url, which ends the run of its endpoint
// (and closes its breaker: wasOpen), and returns which of sent were taken
// back, and the deliveries of the same events that waited for them.
func (b *breakers) accepted(url string, sent []*messages.Delivery) (wasOpen bool, takenBack, waiters []*messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.accepts[endpoint(url)]++
	if at := b.unansweredAt[endpoint(url)]; at > 0 && size(sent) >= at {
		delete(b.unansweredAt, endpoint(url)) // the receiver takes more now
	}
	if br := b.byEndpoint[endpoint(url)]; br != nil {
		wasOpen = br.open
		delete(b.byEndpoint, endpoint(url))
	}
	for _, d := range sent {
		if b.takenBack[d] {
			delete(b.takenBack, d)
			takenBack = append(takenBack, d)
			waiters = append(waiters, b.settleOwed(d, true)...)
		}
	}
	return wasOpen, takenBack, waiters
}

// acks is how many messages url's endpoint accepted so far.
func (b *breakers) acks(url string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepts[endpoint(url)]
}

// unanswered records that a message of n bytes of events to url was left
// unanswered while its endpoint accepted others.
func (b *breakers) unanswered(url string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if at := b.unansweredAt[endpoint(url)]; at == 0 || n < at {
		b.unansweredAt[endpoint(url)] = n
	}
}

// fits reports whether a message of n bytes of events to url is smaller
// than the smallest one its endpoint left unanswered.
func (b *breakers) fits(url string, n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	at := b.unansweredAt[endpoint(url)]
	return at == 0 || n < at
}

// size is the bytes of the events of ds.
func size(ds []*messages.Delivery) int {
	n := 0
	for _, d := range ds {
		n += len(d.Body)
	}
	return n
}

// wasTakenBack reports whether d is a delivery taken back, which no
// requester waits for.
func (b *breakers) wasTakenBack(d *messages.Delivery) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takenBack[d]
}

// pendingTakenBack is how many deliveries taken back are not yet accepted.
func (b *breakers) pendingTakenBack() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.takenBack)
}

// cause is why the breaker of url's endpoint is open, "" when it is not.
func (b *breakers) cause(url string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if br := b.byEndpoint[endpoint(url)]; br != nil && br.open {
		return br.cause
	}
	return ""
}

// eventKey tells events apart for the run: by ID, or by JSON when there is
// no ID (a copy taken back is JSON, a delivery for in_forward is not).
func eventKey(d *messages.Delivery) string {
	if d.EventID != "" {
		return d.EventID
	}
	return string(letterEvent(d))
}

// likelyCause names what an operator should look at when a receiver
// rejects every event with status.
func likelyCause(url string, status int, reason string) string {
	hint := "the receiver rejects every event: check its configuration"
	switch status {
	case http.StatusBadRequest:
		hint = "Fluentd's in_http answers 400 to every event when its <source> has no " +
			"<parse> @type json </parse> section (its default parser fails on the string time field): " +
			"see the Fluentd configuration in the README, or the fluent.conf that configure writes"
	case http.StatusRequestEntityTooLarge:
		hint = "every request is over the receiver's body size limit (in_http's body_size_limit): raise it, or lower --fluentd-batch"
	}
	return fmt.Sprintf("%s rejected %d events in a row with no success between (last: %s, to %s): %s; "+
		"nothing more is dead-lettered, the events wait and are probed until one is accepted",
		endpoint(url), BreakerRun, excerpt(reason), url, hint)
}
