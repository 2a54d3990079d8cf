// Command bench measures the daemon's throughput against the test Teleport
// server and the Fluentd-compatible receiver, each in its own process (the
// bench re-executes itself with -role), with a large backlog:
//
//   - the receiver's raw capacity, from a load generator that POSTs the same
//     bodies over the same mTLS client and number of connections;
//   - the daemon (the real binary, --exit-on-last-event) on the whole
//     backlog: events/s and its ratio to that capacity, CPU seconds per
//     10,000 events and peak RSS (from the child's rusage), p50/p99 time from
//     fetch to acknowledgement (the daemon's fetch_to_ack_seconds histogram,
//     scraped from --metrics-addr);
//   - the same with --fluentd-batch, against the capacity with arrays;
//   - with latency added on the Fluentd path by a toxiproxy proxy, one event
//     per POST and batched, against max-connections / latency x 0.8.
//
// With -memory it instead runs the daemon over a backlog of a million audit
// events with a thousand recordings queued at once, and reports peak RSS.
//
// The files follow what they measure: throughput.go (one event per POST and
// batched, over the whole backlog), lock.go (the lock policy's run),
// forward.go (the forward protocol), latency.go (latency on the Fluentd
// path), memory.go (-memory); capacity.go and daemon.go make one run of the
// load generator or of the daemon; report.go writes the results and the
// README section; child.go, roles.go and plan.go are the helper processes
// and the backlog they share.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

var ctxBackground = context.Background()

type options struct {
	role   string
	pki    string
	plan   plan
	binary string
	// before is another build of the daemon (-before) run just before
	// each daemon run of binary, for before/after ratios in one run.
	before string
	out    string
	conns  int
	batch  int
	// latency runs
	latency       time.Duration
	latencyEvents int
	capacityLimit int
	memory        bool
	readme        string
	skipLatency   bool
	runs          map[string]bool
	forwardBatch  int
	page          int
	cpuprofile    string
	extra         []string // more daemon flags
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "profiled-daemon" {
		os.Exit(profiledDaemon(os.Args[2], os.Args[3:]))
	}
	o, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	switch o.role {
	case "teleport":
		err = runTeleport(o.pki, o.plan)
	case "fluentd":
		err = runFluentd(o.pki)
	case "loadgen":
		err = runLoadgen(o.pki, o.plan)
	case "":
		err = orchestrate(o)
	default:
		err = fmt.Errorf("unknown role %q", o.role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags() (*options, error) {
	o := &options{}
	var start string
	var quick bool
	var extra, runs string
	flag.StringVar(&o.role, "role", "", "internal: run as a helper process (teleport, fluentd, loadgen)")
	flag.StringVar(&o.pki, "pki", "", "internal: credentials directory")
	flag.IntVar(&o.plan.Audit, "audit", 200_000, "audit events in the backlog")
	flag.IntVar(&o.plan.Recordings, "recordings", 2_000, "session recordings (one per session.upload kept in the backlog)")
	flag.IntVar(&o.plan.Sessions, "sessions", 50_000, "session events over all recordings")
	flag.Int64Var(&o.plan.Seed, "seed", 1, "seed of the generated events")
	flag.DurationVar(&o.plan.Step, "step", time.Second, "time between audit events")
	flag.StringVar(&start, "start", "", "internal: time of the first audit event")
	flag.BoolVar(&o.plan.UploadsFirst, "uploads-first", false, "keep the first uploads rather than spreading them over the backlog")
	flag.IntVar(&o.plan.FailedLogins, "failed-logins", 10_000, "failed logins of 50 users within a minute in the middle of the backlog (the lock run locks them)")
	flag.StringVar(&o.binary, "binary", "bin/teleport-event-handler", "the daemon to run")
	flag.StringVar(&o.before, "before", "", "another build of the daemon (an earlier commit's) to run just before each throughput run of -binary, as a row of its own named \"before: ...\", so that both are measured in the same run on the same backlog")
	flag.StringVar(&o.out, "out", "", "directory for credentials, state, logs and results, emptied first (default bench-out/throughput, or bench-out/memory with -memory)")
	flag.IntVar(&o.conns, "connections", 10, "--fluentd-max-connections, and the load generator's connections (10 is the daemon's default: 2 x --concurrency)")
	flag.IntVar(&o.batch, "fluentd-batch", 20, "--fluentd-batch of the batched runs, and the load generator's array size")
	flag.DurationVar(&o.latency, "latency", 25*time.Millisecond, "latency added on the Fluentd path in the latency runs")
	flag.IntVar(&o.latencyEvents, "latency-events", 10_000, "audit events of the backlog's tail read in the latency runs (with their recordings)")
	flag.IntVar(&o.capacityLimit, "capacity-events", 0, "events the load generator sends per capacity run (0: as many as the daemon)")
	flag.BoolVar(&o.skipLatency, "skip-latency", false, "leave out the latency runs")
	flag.StringVar(&runs, "runs", "capacity,single,lock,single-page20,export,capacity-batch,batch,export-batch,capacity-forward,forward-single,forward-batch,forward-export,forward-gzip,relp,relp-export,latency,latency-batch", "the runs to make, comma-separated")
	flag.IntVar(&o.forwardBatch, "forward-batch", 100, "--fluentd-batch of the batched forward runs (the daemon's default over forward), and the load generator's message size")
	flag.IntVar(&o.page, "page", 500, "--batch (events per page read from Teleport) of the daemon runs, unless a run says otherwise; 500 is Teleport's own default page, 0 the daemon's default (pages that grow from 20)")
	flag.BoolVar(&o.memory, "memory", false, "the memory run: 1,000,000 audit events, 1,000 recordings queued at once (sizes can be changed with -audit, -recordings, -sessions)")
	flag.BoolVar(&quick, "quick", false, "small sizes for a quick check: 20,000 audit events, 200 recordings, 5,000 session events, 2,000 in the latency runs")
	flag.StringVar(&o.readme, "readme", "", "README file whose bench section (between <!-- bench:begin --> and <!-- bench:end -->) is replaced with the results")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "run the daemon's code inside this bench binary, writing a CPU profile per run into this directory (figures then come from that build)")
	flag.StringVar(&extra, "daemon-flags", "", "more flags for every daemon run, space-separated")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if quick {
		def := func(name string, p *int, v int) {
			if !set[name] {
				*p = v
			}
		}
		def("audit", &o.plan.Audit, 20_000)
		def("recordings", &o.plan.Recordings, 200)
		def("sessions", &o.plan.Sessions, 5_000)
		def("latency-events", &o.latencyEvents, 2_000)
	}
	if o.memory && o.role == "" {
		def := func(name string, p *int, v int) {
			if !set[name] {
				*p = v
			}
		}
		def("audit", &o.plan.Audit, 1_000_000)
		def("recordings", &o.plan.Recordings, 1_000)
		def("sessions", &o.plan.Sessions, 50_000)
		def("failed-logins", &o.plan.FailedLogins, 0)
		o.plan.UploadsFirst = true
	}
	if start != "" {
		t, err := time.Parse(time.RFC3339Nano, start)
		if err != nil {
			return nil, fmt.Errorf("-start: %w", err)
		}
		o.plan.Start = t
	} else {
		// The backlog ends an hour ago, so that the daemon reads it in
		// windows of the past and catches up right after.
		o.plan.Start = time.Now().UTC().Add(-time.Duration(o.plan.Audit+o.plan.Audit/5+200) * o.plan.Step).Add(-time.Hour).Truncate(time.Second)
	}
	o.extra = strings.Fields(extra)
	if o.out == "" {
		o.out = filepath.Join("bench-out", "throughput")
		if o.memory {
			o.out = filepath.Join("bench-out", "memory")
		}
	}
	o.runs = map[string]bool{}
	for _, r := range strings.Split(runs, ",") {
		o.runs[strings.TrimSpace(r)] = true
	}
	if o.skipLatency {
		delete(o.runs, "latency")
		delete(o.runs, "latency-batch")
	}
	return o, nil
}

func orchestrate(o *options) error {
	if _, err := os.Stat(o.binary); err != nil {
		return fmt.Errorf("the daemon binary: %w (run make build, or give -binary)", err)
	}
	bin, err := filepath.Abs(o.binary)
	if err != nil {
		return err
	}
	o.binary = bin
	if o.before != "" {
		if o.before, err = filepath.Abs(o.before); err != nil {
			return err
		}
		if _, err := os.Stat(o.before); err != nil {
			return fmt.Errorf("-before: %w", err)
		}
	}
	if err := os.RemoveAll(o.out); err != nil {
		return err
	}
	o.pki = filepath.Join(o.out, "certs")
	if _, err := testpki.Generate(o.pki); err != nil {
		return err
	}
	if o.pki, err = filepath.Abs(o.pki); err != nil {
		return err
	}
	rep := &report{
		Date:    time.Now().UTC().Format("2006-01-02"),
		Machine: machine(),
		Command: "go run ./tests/bench " + strings.Join(relativeArgs(os.Args[1:]), " "),
	}
	audit, recs := o.plan.build()
	auditAll, sessionAll := totals(audit, recs, o.plan.Start)
	rep.Plan = fmt.Sprintf("%d audit events, %d recordings with %d session events (%d events in all)", auditAll, len(recs), sessionAll, auditAll+sessionAll)
	step("backlog: %s", rep.Plan)
	page := fmt.Sprintf("--batch %d ", o.page)
	if o.page == 0 {
		page = "" // the daemon's pages, growing from 20
	}
	rep.Daemon = fmt.Sprintf("teleport-event-handler start --teleport-addr <test server> --teleport-identity <file> --fluentd-url <receiver>/test.log --fluentd-session-url <receiver>/session --fluentd-ca/cert/key <files> --storage <fresh dir> --start-time <first event> --fluentd-max-connections %d --skip-session-types '' --metrics-addr <port> --exit-on-last-event %s--export-mode search (export API runs: --export-mode export) %s",
		o.conns, page, strings.Join(o.extra, " "))

	began := time.Now()
	step("starting the test Teleport server (generating the backlog)")
	tp, err := startChild(o, "teleport")
	if err != nil {
		return err
	}
	defer tp.stop()
	step("test Teleport server on %s, ready in %s", tp.Ready, time.Since(began).Round(time.Second))

	if o.memory {
		if err := memoryRun(o, rep, tp, recs, auditAll+sessionAll); err != nil {
			return err
		}
		return finish(o, rep)
	}

	lg, err := startChild(o, "loadgen")
	if err != nil {
		return err
	}
	defer lg.stop()
	if err := throughputRuns(o, rep, lg, tp, auditAll+sessionAll); err != nil {
		return err
	}
	if err := latencyRuns(o, rep, tp, audit, recs); err != nil {
		return err
	}
	rep.Notes = append(rep.Notes,
		"Every process (test Teleport server, receiver, load generator or daemon, bench) shares the same 2 cores; the receiver keeps every record in memory and parses each body, as the e2e tests need.",
		"CPU is the daemon's own, from its rusage; peak RSS is its VmHWM, read every 500 ms until it exits (rusage's maxrss counts the bench's own memory, as Go starts children with CLONE_VM); fetch-to-ack quantiles are interpolated in the buckets (x1.5 wide) of the daemon's fetch_to_ack_seconds histogram, scraped from --metrics-addr just before it exits, over all streams.")
	step("all runs took %s", time.Since(began).Round(time.Second))
	return finish(o, rep)
}
