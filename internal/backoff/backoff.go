// Package backoff is the daemon's one retry policy: the wait before retry n
// of anything (a Fluentd send, a Teleport call, a checkpoint write, an actor
// restart) doubles from Initial up to Max, optionally with jitter.
//
// A Policy is a value and Delay a pure function of the attempt number, so
// callers keep their count where it belongs (in the actor, or in the state
// file for a recording) and a restart neither resets nor needs the policy.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is capped exponential backoff.
type Policy struct {
	// Initial is the wait before the first retry; each later one doubles.
	Initial time.Duration
	// Max caps the wait.
	Max time.Duration
	// Jitter spreads each wait uniformly over its upper half, [d/2, d], so
	// that many callers failing together do not retry together, while none
	// retries sooner than half the nominal wait.
	Jitter bool
}

// Nominal is the wait before retry n (1-based; below 1 counts as 1),
// without jitter.
func (p Policy) Nominal(n int) time.Duration {
	d := max(p.Initial, 0)
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, max(p.Max, p.Initial))
}

// Delay is the wait before retry n (1-based), with jitter when the policy
// has it. A jittered wait is rounded to three significant digits, within
// the jitter's bounds: the log line that says it reads at a glance and
// says the wait as it is (retry_in=9.79s, not 9.785731839s).
func (p Policy) Delay(n int) time.Duration {
	d := p.Nominal(n)
	if p.Jitter && d > 0 {
		lo := d / 2
		j, unit := significant(lo + rand.N(d/2+1))
		switch {
		case j < lo:
			j += unit
		case j > d:
			j -= unit
		}
		d = j
	}
	return d
}

// significant is d rounded to three significant digits, and the unit of
// the last of them.
func significant(d time.Duration) (rounded, unit time.Duration) {
	unit = 1
	for v := d; v >= 1000; v /= 10 {
		unit *= 10
	}
	return d.Round(unit), unit
}
