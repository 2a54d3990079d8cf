package explore

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

	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// shortSeeds are the seeds make test runs: a few short schedules, the
// same on every run, so that a red run replays.
var shortSeeds = []uint64{1, 2, 3, 4}

var binary string

func TestMain(m *testing.M) {
	b, err := harness.Binary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = b
	os.Exit(m.Run())
}

// Row is one seed's line of the table.
type Row struct {
	Seed       uint64          `json:"seed"`
	Short      bool            `json:"short"`
	Workload   string          `json:"workload"`
	Events     int             `json:"events"`
	Faults     map[Kind]int    `json:"faults"`
	Runs       int             `json:"runs"`
	Checks     int             `json:"invariants_checked"`
	Violations []string        `json:"violations"`
	Seconds    float64         `json:"seconds"`
	Skipped    map[Kind]string `json:"not_injected,omitempty"`
}

// TestExplore runs seeds: a few short ones by default (make test); with
// TEH_EXPLORE=1 (make explore) as many as fit in TEH_EXPLORE_TIME, or the
// one TEH_EXPLORE_SEED names.
func TestExplore(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault explorer runs the daemon for a while; not with -short")
	}
	long := os.Getenv("TEH_EXPLORE") == "1"
	short := !long || os.Getenv("TEH_EXPLORE_SHORT") == "1"
	var rows []Row
	var mu sync.Mutex
	run := func(seed uint64) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			row := exploreSeed(t, seed, short)
			mu.Lock()
			rows = append(rows, row)
			mu.Unlock()
		})
	}
	switch {
	case os.Getenv("TEH_EXPLORE_SEED") != "":
		seed, err := strconv.ParseUint(os.Getenv("TEH_EXPLORE_SEED"), 10, 64)
		if err != nil {
			t.Fatalf("TEH_EXPLORE_SEED: %v", err)
		}
		run(seed)
	case long:
		budget, err := time.ParseDuration(envOr("TEH_EXPLORE_TIME", "10m"))
		if err != nil {
			t.Fatalf("TEH_EXPLORE_TIME: %v", err)
		}
		for end := time.Now().Add(budget); time.Now().Before(end); {
			run(rand.Uint64() >> 16)
		}
	default:
		for _, seed := range shortSeeds {
			run(seed)
		}
	}
	report(t, rows, long)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// exploreSeed runs one seed and reports what broke, with how to replay it.
func exploreSeed(t *testing.T, seed uint64, short bool) Row {
	began := time.Now()
	p := NewPlan(seed, short)
	t.Logf("seed %d: %s\nschedule:\n%s", seed, p.Describe(), p.Timeline())
	x := newExplorer(t, binary, p)
	x.drive()
	exit, line := x.finish()
	x.check(exit, line)
	row := Row{Seed: seed, Short: short, Workload: p.Describe(), Faults: x.injected, Runs: len(x.runs),
		Checks: x.checked, Seconds: time.Since(began).Seconds(), Skipped: x.notInjected, Violations: []string{}}
	row.Events = len(x.want.audit)
	for _, idx := range x.want.sessions {
		row.Events += len(idx)
	}
	t.Logf("what happened:\n%s", strings.Join(x.timeline, "\n"))
	for _, v := range x.violations {
		row.Violations = append(row.Violations, v.String())
	}
	if len(x.violations) > 0 {
		replay := fmt.Sprintf("make explore SEED=%d", seed)
		if short {
			replay += " EXPLORE_SHORT=1"
		}
		t.Errorf("seed %d broke %d invariant(s); replay with: %s\n\nwhat happened:\n%s\n\nviolations:\n- %s",
			seed, len(x.violations), replay, strings.Join(x.timeline, "\n"), strings.Join(row.Violations, "\n- "))
	}
	return row
}

// report prints the run's table and the faults injected by kind, and
// writes them as JSON to $TEH_EXPLORE_OUT when set.
func report(t *testing.T, rows []Row, long bool) {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "seed\tevents\tfaults\truns\tchecks\tviolations\ttime\tworkload\n")
	byKind, seeds := map[Kind]int{}, map[Kind]int{}
	events, runs, checks, violations := 0, 0, 0, 0
	for _, r := range rows {
		n := 0
		for k, c := range r.Faults {
			n += c
			byKind[k] += c
			seeds[k]++
		}
		fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%d\t%.0fs\t%s\n", r.Seed, r.Events, n, r.Runs, r.Checks, len(r.Violations), r.Seconds, r.Workload)
		events, runs, checks, violations = events+r.Events, runs+r.Runs, checks+r.Checks, violations+len(r.Violations)
	}
	w.Flush()
	fmt.Fprintf(&b, "\n%d seeds, %d events, %d daemon runs, %d invariant checks, %d violations\n\nfault kind\tinjected\tseeds\n", len(rows), events, runs, checks, violations)
	for _, k := range kinds {
		fmt.Fprintf(&b, "%-28s\t%d\t%d\n", k, byKind[k], seeds[k])
	}
	t.Logf("\n%s", b.String())
	if out := os.Getenv("TEH_EXPLORE_OUT"); out != "" {
		raw, _ := json.MarshalIndent(map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "long": long, "rows": rows}, "", "  ")
		if err := os.WriteFile(out, append(raw, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
}
