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
	date := time.Now().UTC()
	run := func(seed uint64) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			row := exploreSeed(t, seed, short)
			mu.Lock()
			rows = append(rows, row)
			mu.Unlock()
		})
	}
	switch {
	case os.Getenv("TEH_EXPLORE_FROM") != "":
		// The report of an earlier run, from its JSON.
		raw, err := os.ReadFile(os.Getenv("TEH_EXPLORE_FROM"))
		if err != nil {
			t.Fatal(err)
		}
		var res results
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatal(err)
		}
		rows, long, date = res.Rows, res.Long, res.Date
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
	report(t, rows, long, date)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// exploreSeed runs one seed and reports what broke, with how to replay it
// and, with TEH_EXPLORE_SHRINK=1, the smallest plan found that still breaks
// the same invariant.
func exploreSeed(t *testing.T, seed uint64, short bool) Row {
	began := time.Now()
	p := NewPlan(seed, short)
	if cut := os.Getenv("TEH_EXPLORE_CUT"); cut != "" {
		var err error
		if p, err = p.Cut(cut); err != nil {
			t.Fatalf("TEH_EXPLORE_CUT: %v", err)
		}
	}
	t.Logf("seed %d: %s\nschedule:\n%s", seed, p.Describe(), p.Timeline())
	x := runPlan(t, p)
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
	if len(x.violations) == 0 {
		return row
	}
	replay := replayCommand(p)
	t.Errorf("seed %d broke %d invariant(s); replay with: %s\n\nwhat happened:\n%s\n\nviolations:\n- %s",
		seed, len(x.violations), replay, strings.Join(x.timeline, "\n"), strings.Join(row.Violations, "\n- "))
	if os.Getenv("TEH_EXPLORE_SHRINK") == "1" {
		small := shrink(t, p, x.violations[0].Invariant)
		t.Errorf("seed %d shrunk to %s; schedule:\n%sreplay with: %s", seed, small.Describe(), small.Timeline(), replayCommand(small))
	}
	return row
}

// runPlan runs a plan through and checks it.
func runPlan(t *testing.T, p Plan) *explorer {
	x := newExplorer(t, binary, p)
	x.drive()
	exit, line := x.finish()
	x.check(exit, line)
	return x
}

func replayCommand(p Plan) string {
	c := fmt.Sprintf("make explore SEED=%d", p.Seed)
	if p.Short {
		c += " EXPLORE_SHORT=1"
	}
	if p.cut != "" {
		c += " EXPLORE_CUT=" + p.cut
	}
	return c
}

// shrink drops faults one at a time, then halves the history, as long as
// the plan still breaks the invariant; each try is a run of its own, and
// at most 12 are made.
func shrink(t *testing.T, p Plan, invariant string) Plan {
	tries := 0
	breaks := func(q Plan) bool {
		tries++
		broke := false
		t.Run(fmt.Sprintf("shrink-%d", tries), func(t *testing.T) {
			for _, v := range runPlan(t, q).violations {
				broke = broke || v.Invariant == invariant
			}
		})
		return broke
	}
	for i := 0; i < len(p.Faults) && tries < 12; {
		if q, _ := p.Cut(fmt.Sprintf("f%d", i)); breaks(q) {
			p = q
			continue
		}
		i++
	}
	for p.Audit > 50 && tries < 12 {
		q, _ := p.Cut(fmt.Sprintf("a%d", p.Audit/2))
		if !breaks(q) {
			break
		}
		p = q
	}
	return p
}

// summary sums up a run's rows.
type summary struct {
	seeds, events, runs, checks, violations int
	seconds                                 float64
	byKind, seedsByKind                     map[Kind]int
	notInjected                             map[Kind]string
	failed                                  []uint64
}

func summarize(rows []Row) summary {
	s := summary{byKind: map[Kind]int{}, seedsByKind: map[Kind]int{}, notInjected: map[Kind]string{}, seeds: len(rows)}
	for _, r := range rows {
		for k, c := range r.Faults {
			s.byKind[k] += c
			s.seedsByKind[k]++
		}
		for k, why := range r.Skipped {
			s.notInjected[k] = why
		}
		s.events, s.runs, s.checks, s.violations = s.events+r.Events, s.runs+r.Runs, s.checks+r.Checks, s.violations+len(r.Violations)
		s.seconds += r.Seconds
		if len(r.Violations) > 0 {
			s.failed = append(s.failed, r.Seed)
		}
	}
	return s
}

func (r Row) faults() int {
	n := 0
	for _, c := range r.Faults {
		n += c
	}
	return n
}

// report prints the run's table and the faults injected by kind; it writes
// them as JSON to $TEH_EXPLORE_OUT and as Markdown into the explore section
// of each file $TEH_EXPLORE_DOC names.
func report(t *testing.T, rows []Row, long bool, date time.Time) {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "seed\tevents\tfaults\truns\tchecks\tviolations\ttime\tworkload\n")
	for _, r := range rows {
		fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%d\t%.0fs\t%s\n", r.Seed, r.Events, r.faults(), r.Runs, r.Checks, len(r.Violations), r.Seconds, r.Workload)
	}
	w.Flush()
	s := summarize(rows)
	fmt.Fprintf(&b, "\n%d seeds, %d events, %d daemon runs, %d invariant checks, %d violations\n\nfault kind\tinjected\tseeds\n", s.seeds, s.events, s.runs, s.checks, s.violations)
	for _, k := range kinds {
		fmt.Fprintf(&b, "%-28s\t%d\t%d\n", k, s.byKind[k], s.seedsByKind[k])
	}
	t.Logf("\n%s", b.String())
	if out := os.Getenv("TEH_EXPLORE_OUT"); out != "" {
		raw, _ := json.MarshalIndent(results{Date: date, Long: long, Rows: rows}, "", "  ")
		if err := os.WriteFile(out, append(raw, '\n'), 0o644); err != nil {
			t.Errorf("write %s: %v", out, err)
		}
	}
	for _, doc := range strings.Fields(os.Getenv("TEH_EXPLORE_DOC")) {
		if err := writeDoc(doc, s.markdown(date, long)); err != nil {
			t.Error(err)
		}
	}
}

// results is explore-results.json.
type results struct {
	Date time.Time `json:"date"`
	Long bool      `json:"long"`
	Rows []Row     `json:"rows"`
}

// markdown is the summary as the docs show it.
func (s summary) markdown(date time.Time, long bool) string {
	var b strings.Builder
	form := "long"
	if !long {
		form = "short"
	}
	fmt.Fprintf(&b, "Latest run (%s, 2 shared cores, %s schedules): %d seeds in %.0f minutes, %d events, %d daemon runs, "+
		"%d invariant checks, **%d violations**", date.Format(time.DateOnly), form, s.seeds, s.seconds/60, s.events, s.runs, s.checks, s.violations)
	if len(s.failed) > 0 {
		fmt.Fprintf(&b, " (seeds %v)", s.failed)
	}
	b.WriteString(".\n\n| fault | injected | in seeds |\n|---|---|---|\n")
	for _, k := range kinds {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", k, s.byKind[k], s.seedsByKind[k])
	}
	for _, k := range kinds {
		if why, ok := s.notInjected[k]; ok {
			fmt.Fprintf(&b, "\nNot injected: %s (%s).\n", k, why)
		}
	}
	return b.String()
}

// writeDoc replaces the explore section of a Markdown file.
func writeDoc(path, section string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	const begin, end = "<!-- explore:begin -->\n", "<!-- explore:end -->"
	i, j := strings.Index(string(raw), begin), strings.Index(string(raw), end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q ... %q section", path, strings.TrimSpace(begin), end)
	}
	out := string(raw[:i+len(begin)]) + section + string(raw[j:])
	return os.WriteFile(path, []byte(out), 0o644)
}
