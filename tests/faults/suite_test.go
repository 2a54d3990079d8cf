// Package faults is the fault-injection suite: the real binary (built with
// -tags faults, so that TEH_FAULTS can arm panics), the test Teleport server
// and the Fluentd-compatible receiver, each behind a TCP fault proxy, through
// crashes, panics, broken networks and broken storage. After each scenario
// it checks the delivery guarantee from the receiver's records and the
// seeded history, and it prints one table for the run (also written as JSON).
//
// It runs only with TEH_CHAOS=1 (make chaos); TEH_CHAOS_SEED replays a run.
package faults

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

var (
	binary string
	seed   uint64
	rows   []Row
	rowsMu sync.Mutex
)

// Row is one scenario's line in the run's table.
type Row struct {
	Scenario   string  `json:"scenario"`
	Faults     string  `json:"faults"`
	Expected   int     `json:"expected"`
	Delivered  int     `json:"delivered"`
	Lost       int     `json:"lost"`
	Duplicated int     `json:"duplicated"`
	DupBound   int     `json:"duplicate_bound"`
	Restarts   int     `json:"restarts"` // -1 when the scenario does not scrape them
	Seconds    float64 `json:"seconds"`
	Result     string  `json:"result"`
}

func TestMain(m *testing.M) {
	if os.Getenv("TEH_CHAOS") != "1" {
		fmt.Println("fault-injection suite skipped: run it with make chaos (TEH_CHAOS=1)")
		os.Exit(0)
	}
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("TEH_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "TEH_CHAOS_SEED:", err)
			os.Exit(2)
		}
		seed = v
	}
	fmt.Printf("fault-injection seed %d (replay with TEH_CHAOS_SEED=%d make chaos)\n", seed, seed)
	b, err := harness.Binary("faults")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = b
	code := m.Run()
	report()
	os.Exit(code)
}

// report prints the table and writes it as JSON to $TEH_CHAOS_OUT or
// chaos-results.json in the working directory.
func report() {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "\nscenario\tfaults injected\texpected\tdelivered\tlost\tduplicated (bound)\trestarts\ttime\tresult\n")
	for _, r := range rows {
		restarts := "-"
		if r.Restarts >= 0 {
			restarts = strconv.Itoa(r.Restarts)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d (%d)\t%s\t%.0fs\t%s\n", r.Scenario, r.Faults, r.Expected, r.Delivered, r.Lost,
			r.Duplicated, r.DupBound, restarts, r.Seconds, r.Result)
	}
	w.Flush()
	out := os.Getenv("TEH_CHAOS_OUT")
	if out == "" {
		out = "chaos-results.json"
	}
	raw, _ := json.MarshalIndent(map[string]any{"seed": seed, "date": time.Now().UTC().Format(time.RFC3339), "rows": rows}, "", "  ")
	if err := os.WriteFile(out, append(raw, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "write results:", err)
	}
}

// scenario is one run of the suite; finish records its row.
type scenario struct {
	t      *testing.T
	e      *harness.Env
	rng    *rand.Rand
	row    Row
	began  time.Time
	faults []string
}

func newScenario(t *testing.T, name string) *scenario {
	e := harness.NewEnv(t, binary)
	h := uint64(0)
	for _, c := range name {
		h = h*31 + uint64(c)
	}
	s := &scenario{t: t, e: e, rng: rand.New(rand.NewPCG(seed, h)), row: Row{Scenario: name, Restarts: -1}, began: time.Now()}
	t.Cleanup(s.record)
	return s
}

func (s *scenario) fault(format string, args ...any) {
	s.faults = append(s.faults, fmt.Sprintf(format, args...))
}

// check records the tally and fails the scenario if anything was lost or
// more than bound events arrived twice.
func (s *scenario) check(tally harness.Tally, bound int) {
	s.row.Expected, s.row.Delivered, s.row.Lost, s.row.Duplicated, s.row.DupBound =
		tally.Expected, tally.Delivered, tally.Lost, tally.Duplicated, bound
	require.Zero(s.t, tally.Lost, "events lost, e.g. %s", tally.FirstLost)
	require.LessOrEqual(s.t, tally.Duplicated, bound, "duplicates beyond the in-flight bound")
}

func (s *scenario) record() {
	s.row.Seconds = time.Since(s.began).Seconds()
	s.row.Faults = strings.Join(s.faults, "; ")
	s.row.Result = "ok"
	if s.t.Skipped() {
		s.row.Result = "skipped"
	}
	if s.t.Failed() {
		s.row.Result = "FAILED"
	}
	rowsMu.Lock()
	rows = append(rows, s.row)
	rowsMu.Unlock()
}

// restarts reads the actor restarts from a metrics scrape.
func restarts(m map[string]float64) int {
	n := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "teleport_event_handler_actor_restarts_total{") {
			n += v
		}
	}
	return int(n)
}

// defaultSkip is --skip-session-types' default.
var defaultSkip = map[string]bool{"print": true, "desktop.recording": true}
