package pool

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

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
// event, per endpoint. A rejection among accepted events dead-letters the event,
// as always. When a run of BreakerRun distinct events is rejected with no
// success between, the endpoint's breaker opens: nothing more is dead-lettered,
// the run's letters are taken back (sent again, and removed from the
// dead-letter file once accepted), the pool holds every delivery to the URL
// but one job at a time, and the jobs the connections hold are retried with
// backoff, as probes. The first success closes the breaker.
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
}

// breaker is the state of one endpoint since its last success there.
type breaker struct {
	rejected map[string]bool      // distinct events rejected in the run
	letters  []*messages.Delivery // dead-lettered in the run
	open     bool
	cause    string // for readiness and logs, while open
}

func newBreakers() *breakers {
	return &breakers{byEndpoint: map[string]*breaker{}, takenBack: map[*messages.Delivery]bool{}}
}

func (b *breakers) get(url string) *breaker {
	br := b.byEndpoint[endpoint(url)]
	if br == nil {
		br = &breaker{rejected: map[string]bool{}}
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
// the letters to take back when it just opened.
func (b *breakers) reject(d *messages.Delivery, status int, reason string) (open bool, takeBack []*messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(d.URL)
	if br.open {
		return true, nil
	}
	br.rejected[eventKey(d)] = true
	if len(br.rejected) < BreakerRun {
		// A letter of the run from now on, while it is being written too:
		// if the breaker opens meanwhile, it is taken back with the others.
		br.letters = append(br.letters, d)
		return false, nil
	}
	br.open, br.cause = true, likelyCause(d.URL, status, reason)
	for _, l := range br.letters {
		takeBack = append(takeBack, b.takeBack(l))
	}
	br.letters = nil
	return true, takeBack
}

// takeBack returns the copy of d, without a requester, that is sent again;
// mu must be held.
func (b *breakers) takeBack(d *messages.Delivery) *messages.Delivery {
	cp := *d
	cp.ReplyTo = nil
	b.takenBack[&cp] = true
	return &cp
}

// unreject forgets d's rejection: its dead letter could not be written, so
// it is retried instead.
func (b *breakers) unreject(d *messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(d.URL)
	delete(br.rejected, eventKey(d))
	for i, l := range br.letters {
		if l == d {
			br.letters = append(br.letters[:i:i], br.letters[i+1:]...)
			break
		}
	}
}

// relettered records that d, a delivery taken back, was rejected for good
// again with its breaker closed: it is a bad event after all, and its
// letter, still in the file, stays there.
func (b *breakers) relettered(d *messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.takenBack, d)
}

// accepted records a success on url, which ends the run of its endpoint
// (and closes its breaker: wasOpen), and returns which of sent were taken
// back.
func (b *breakers) accepted(url string, sent []*messages.Delivery) (wasOpen bool, takenBack []*messages.Delivery) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if br := b.byEndpoint[endpoint(url)]; br != nil {
		wasOpen = br.open
		delete(b.byEndpoint, endpoint(url))
	}
	for _, d := range sent {
		if b.takenBack[d] {
			delete(b.takenBack, d)
			takenBack = append(takenBack, d)
		}
	}
	return wasOpen, takenBack
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

// eventKey tells events apart for the run: by ID, or by body when there is
// no ID.
func eventKey(d *messages.Delivery) string {
	if d.EventID != "" {
		return d.EventID
	}
	return string(d.Body)
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
