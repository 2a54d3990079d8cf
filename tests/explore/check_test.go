package explore

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// The invariants catch what they are for: each check against accounts
// that break it, and against one that does not.
func newTestExplorer(t *testing.T) (*explorer, *account) {
	x := &explorer{t: t, injected: map[Kind]int{}, want: &expect{
		audit:         []string{"a", "b", "c"},
		mayDeadLetter: map[string]string{"c": "rejected by the receiver (400)"},
		sessions:      map[string][]int64{"s1": {0, 1}},
		missing:       map[string]bool{"s2": true}, broken: map[string]bool{}, canary: "CANARY1X",
	}}
	a := &account{got: map[string]int{"a": 1, "b": 1}, sessions: map[string]map[int64]int{"s1": {0: 1, 1: 1}},
		letters: map[string]persistence.DeadLetter{"c": {EventID: "c", Status: 400}}, givenUp: map[string]bool{"s2": true}, parked: map[string]bool{}}
	return x, a
}

func TestAccountedCatchesALostEvent(t *testing.T) {
	x, a := newTestExplorer(t)
	x.accounted(a)
	require.Empty(t, x.violations)
	delete(a.got, "b")
	delete(a.sessions["s1"], 1)
	delete(a.givenUp, "s2")
	x.accounted(a)
	require.Len(t, x.violations, 2)
	require.Contains(t, x.violations[0].Events, "b")
	require.Contains(t, x.violations[0].Events, "s1/1")
	require.Contains(t, x.violations[1].Detail, "never had were not given up")
}

func TestDeadLetteredCatchesALetterNotRefused(t *testing.T) {
	x, a := newTestExplorer(t)
	x.deadLettered(a)
	require.Empty(t, x.violations)
	a.letters["a"] = persistence.DeadLetter{EventID: "a", Status: 403, Reason: "refused"}
	a.givenUp["s1"] = true
	x.deadLettered(a)
	require.Len(t, x.violations, 2)
}

func TestExitStatusMatchesWhatWasLeftUndone(t *testing.T) {
	x, a := newTestExplorer(t)
	x.exitStatus(3, exitLine{}, a) // a recording given up
	require.Empty(t, x.violations)
	x.exitStatus(0, exitLine{}, a)
	require.Len(t, x.violations, 1)
	a.givenUp = map[string]bool{}
	x.exitStatus(3, exitLine{}, a)
	require.Len(t, x.violations, 2)
	x.exitStatus(3, exitLine{DeadLettered: 1}, a)
	require.Len(t, x.violations, 2)
}

func TestDuplicatesBoundedByStopsAndLostAnswers(t *testing.T) {
	x, a := newTestExplorer(t)
	a.got["a"] = 1 + httpWindow
	x.stops = 1
	x.duplicates(a)
	require.Empty(t, x.violations)
	a.got["b"] = 2
	x.duplicates(a)
	require.Len(t, x.violations, 1)
	x.injected[ReceiverResets] = 1
	x.duplicates(a)
	require.Len(t, x.violations, 1)
}

func TestLogsCatchAnEventField(t *testing.T) {
	x, _ := newTestExplorer(t)
	p := &harness.Proc{}
	_, _ = p.Write([]byte(`{"level":"info","event_id":"a","message":"sent"}` + "\n"))
	x.runs = []*daemonRun{{proc: p}}
	x.logs()
	require.Empty(t, x.violations)
	_, _ = p.Write([]byte(`{"level":"debug","event":{"command":"CANARY1X yyy"},"message":"oops"}` + "\n"))
	x.logs()
	require.Len(t, x.violations, 1)
	require.True(t, strings.Contains(x.violations[0].Detail, "oops"))
}
