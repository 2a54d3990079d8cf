package backoff_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/backoff"
)

func TestNominalDoublesUpToTheCap(t *testing.T) {
	p := backoff.Policy{Initial: 100 * time.Millisecond, Max: time.Second}
	for n, want := range map[int]time.Duration{
		-1: 100 * time.Millisecond, 0: 100 * time.Millisecond, 1: 100 * time.Millisecond,
		2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond,
		5: time.Second, 6: time.Second, 1000: time.Second,
	} {
		require.Equal(t, want, p.Nominal(n), "retry %d", n)
		require.Equal(t, want, p.Delay(n), "retry %d without jitter", n)
	}
}

func TestACapBelowTheInitialWaitKeepsTheInitialWait(t *testing.T) {
	p := backoff.Policy{Initial: time.Second}
	require.Equal(t, time.Second, p.Nominal(1))
	require.Equal(t, time.Second, p.Nominal(10))
}

func TestJitterStaysInTheUpperHalf(t *testing.T) {
	p := backoff.Policy{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Jitter: true}
	seen := map[time.Duration]bool{}
	for range 1000 {
		for n := 1; n <= 8; n++ {
			d, nominal := p.Delay(n), p.Nominal(n)
			require.GreaterOrEqual(t, d, nominal/2, "retry %d", n)
			require.LessOrEqual(t, d, nominal, "retry %d", n)
			if n == 8 {
				seen[d] = true
			}
		}
	}
	require.Greater(t, len(seen), 100, "jittered waits should differ")
}

func TestZeroPolicyRetriesAtOnce(t *testing.T) {
	require.Zero(t, backoff.Policy{Jitter: true}.Delay(5))
}

// A jittered wait has three significant digits at most (9.79s, 612ms, not
// 9.785731839s): the log line that says it reads at a glance, and says the
// wait as it is.
func TestJitteredWaitsHaveThreeSignificantDigits(t *testing.T) {
	p := backoff.Policy{Initial: 333 * time.Millisecond, Max: 30 * time.Second, Jitter: true}
	for range 1000 {
		for n := 1; n <= 9; n++ {
			d, nominal := p.Delay(n), p.Nominal(n)
			digits := strings.TrimRight(strconv.FormatInt(int64(d), 10), "0")
			require.LessOrEqual(t, len(digits), 3, "retry %d: %s", n, d)
			require.GreaterOrEqual(t, d, nominal/2, "retry %d", n)
			require.LessOrEqual(t, d, nominal, "retry %d", n)
		}
	}
}
