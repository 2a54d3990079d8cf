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
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

var ctxBackground = context.Background()

type options struct {
	role   string
	pki    string
	plan   plan
	binary string
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
	flag.StringVar(&o.out, "out", "", "directory for credentials, state, logs and results, emptied first (default bench-out/throughput, or bench-out/memory with -memory)")
	flag.IntVar(&o.conns, "connections", 10, "--fluentd-max-connections, and the load generator's connections (10 is the daemon's default: 2 x --concurrency)")
	flag.IntVar(&o.batch, "fluentd-batch", 20, "--fluentd-batch of the batched runs, and the load generator's array size")
	flag.DurationVar(&o.latency, "latency", 25*time.Millisecond, "latency added on the Fluentd path in the latency runs")
	flag.IntVar(&o.latencyEvents, "latency-events", 10_000, "audit events of the backlog's tail read in the latency runs (with their recordings)")
	flag.IntVar(&o.capacityLimit, "capacity-events", 0, "events the load generator sends per capacity run (0: as many as the daemon)")
	flag.BoolVar(&o.skipLatency, "skip-latency", false, "leave out the latency runs")
	flag.StringVar(&runs, "runs", "capacity,single,lock,single-page20,export,capacity-batch,batch,export-batch,capacity-forward,forward-single,forward-batch,forward-gzip,latency,latency-batch", "the runs to make, comma-separated")
	flag.IntVar(&o.forwardBatch, "forward-batch", 100, "--fluentd-batch of the batched forward runs (the daemon's default over forward), and the load generator's message size")
	flag.IntVar(&o.page, "page", 500, "--batch (events per page read from Teleport) of the daemon runs, unless a run says otherwise; 500 is Teleport's own default page")
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

// child is a helper process.
type child struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	// Ready is the rest of the helper's "ready" line (its address).
	Ready string
}

func startChild(o *options, role string, extra ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-role", role, "-pki", o.pki}, o.plan.args()...)
	cmd := exec.Command(self, append(args, extra...)...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: role, cmd: cmd, in: in, out: bufio.NewScanner(outR)}
	line, err := c.read()
	if err != nil {
		return nil, fmt.Errorf("%s helper: %w", role, err)
	}
	if !strings.HasPrefix(line, "ready") {
		return nil, fmt.Errorf("%s helper said %q", role, line)
	}
	c.Ready = strings.TrimSpace(strings.TrimPrefix(line, "ready"))
	return c, nil
}

func (c *child) read() (string, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%s helper exited", c.name)
	}
	return c.out.Text(), nil
}

func (c *child) ask(cmd string) (string, error) {
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		return "", err
	}
	return c.read()
}

// stop closes the helper's stdin and waits for it; it returns its CPU time.
func (c *child) stop() float64 {
	c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
	if c.cmd.ProcessState == nil {
		return 0
	}
	cpu, _ := rusage(c.cmd.ProcessState)
	return cpu
}

func rusage(ps *os.ProcessState) (cpuSeconds float64, maxRSSMB float64) {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime), float64(ru.Maxrss) / 1024 // Linux: KiB
}

// scrape returns the samples of /metrics by name and labels, like
// harness.Scrape but uncompressed: gzip would cost the daemon more than the
// scrape itself.
func scrape(addr string) map[string]float64 {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := scrapeClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 0 {
			if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				out[line[:i]] = v
			}
		}
	}
	if sc.Err() != nil {
		return nil
	}
	return out
}

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

// procHWM is the peak resident set size of a running process so far, in
// MB, from /proc (VmHWM). The rusage of a child is no good for that: Go
// starts children with CLONE_VM, and Linux counts the parent's resident
// set at the exec into the child's peak.
func procHWM(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// procCPU is the CPU time of a running process so far, from /proc.
func procCPU(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// result is one row of the report.
type result struct {
	Name     string  `json:"name"`
	Kind     string  `json:"kind"` // capacity, daemon
	Events   int     `json:"events"`
	Expected int     `json:"expected,omitempty"`
	Posts    int     `json:"posts"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"events_per_second"`
	// Ratio is Rate over Baseline (a capacity, or the latency target).
	Baseline     float64 `json:"baseline_events_per_second,omitempty"`
	BaselineName string  `json:"baseline,omitempty"`
	Ratio        float64 `json:"ratio,omitempty"`
	CPUPer10k    float64 `json:"cpu_seconds_per_10k_events"`
	// Daemon runs only.
	MaxRSSMB   float64 `json:"peak_rss_mb,omitempty"`
	P50, P99   float64 `json:"-"`
	P50ms      float64 `json:"fetch_to_ack_p50_ms,omitempty"`
	P99ms      float64 `json:"fetch_to_ack_p99_ms,omitempty"`
	AckSamples int     `json:"fetch_to_ack_samples,omitempty"`
	Duplicates int     `json:"duplicates"`
	Missing    int     `json:"missing"`
	Failures   int     `json:"failed_posts,omitempty"`
	Handshakes int     `json:"tls_handshakes"`
	ExitCode   int     `json:"exit_code"`
	Queued     int     `json:"recordings_waiting_peak,omitempty"`
	// From the daemon's last scrape, for diagnosis.
	CheckpointWrites int     `json:"checkpoint_writes,omitempty"`
	CheckpointMeanMs float64 `json:"checkpoint_write_mean_ms,omitempty"`
	SendMeanMs       float64 `json:"send_mean_ms,omitempty"`
	Fetched          int     `json:"events_fetched,omitempty"`
	// Peaks over the scrapes, in MB.
	PeakHeapInuseMB float64 `json:"peak_heap_inuse_mb,omitempty"`
	PeakHeapSysMB   float64 `json:"peak_heap_sys_mb,omitempty"`
	PeakStackMB     float64 `json:"peak_stack_inuse_mb,omitempty"`
	PeakGoroutines  int     `json:"peak_goroutines,omitempty"`
	// ReceiverCPUPer10k is the receiver's own CPU time per 10,000 events;
	// TeleportCPUPer10k the test Teleport server's during a daemon run.
	ReceiverCPUPer10k float64  `json:"receiver_cpu_seconds_per_10k_events"`
	TeleportCPUPer10k float64  `json:"teleport_cpu_seconds_per_10k_events,omitempty"`
	Command           []string `json:"command,omitempty"`
}

type report struct {
	Date    string   `json:"date"`
	Machine string   `json:"machine"`
	Command string   `json:"command"`
	Plan    string   `json:"backlog"`
	Daemon  string   `json:"daemon_command"`
	Results []result `json:"results"`
	Targets []string `json:"targets"`
	Notes   []string `json:"notes"`
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
	rep.Daemon = fmt.Sprintf("teleport-event-handler start --teleport-addr <test server> --teleport-identity <file> --fluentd-url <receiver>/test.log --fluentd-session-url <receiver>/session --fluentd-ca/cert/key <files> --storage <fresh dir> --start-time <first event> --fluentd-max-connections %d --skip-session-types '' --metrics-addr <port> --exit-on-last-event --batch %d --export-mode search (export API runs: --export-mode export) %s",
		o.conns, o.page, strings.Join(o.extra, " "))

	began := time.Now()
	step("starting the test Teleport server (generating the backlog)")
	tp, err := startChild(o, "teleport")
	if err != nil {
		return err
	}
	defer tp.stop()
	step("test Teleport server on %s, ready in %s", tp.Ready, time.Since(began).Round(time.Second))

	if o.memory {
		lastUpload := time.Time{}
		for _, r := range recs {
			if r.Upload.After(lastUpload) {
				lastUpload = r.Upload
			}
		}
		r, err := runDaemon(o, "daemon, 1 event per POST", tp, o.plan.Start, auditAll+sessionAll, nil, 0, len(recs), lastUpload)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, r)
		rep.Notes = append(rep.Notes, fmt.Sprintf("Memory run: %d recordings registered from the first audit events, so that they wait at once; %q is the most that were registered and not finished at one time (from the daemon's metrics once its checkpoint passed the last upload).", len(recs), "recordings waiting"))
		return finish(o, rep)
	}

	lg, err := startChild(o, "loadgen")
	if err != nil {
		return err
	}
	defer lg.stop()
	total := auditAll + sessionAll
	limit := o.capacityLimit
	if limit <= 0 {
		limit = total
	}
	batchFlags := []string{"--fluentd-batch", strconv.Itoa(o.batch)}
	var capSingle, capBatch result
	if o.runs["capacity"] {
		if capSingle, err = runCapacity(o, lg, fmt.Sprintf("receiver capacity, 1 event per POST, %d connections", o.conns), 1, limit); err != nil {
			return err
		}
		rep.Results = append(rep.Results, capSingle)
	}
	if o.runs["single"] {
		r, err := runDaemon(o, "daemon, 1 event per POST", tp, o.plan.Start, total, nil, 0, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline("receiver capacity, 1 event per POST", capSingle.Rate)
		rep.Results = append(rep.Results, r)
	}
	if o.runs["lock"] {
		r, err := runDaemon(o, fmt.Sprintf("daemon, 1 event per POST, --lock-enabled (%d failed logins of %d users)", o.plan.FailedLogins, LoginUsers),
			tp, o.plan.Start, total, []string{"--lock-enabled", "--lock-period", "1000h"}, 0, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline("receiver capacity, 1 event per POST", capSingle.Rate)
		rep.Results = append(rep.Results, r)
		rep.Notes = append(rep.Notes, fmt.Sprintf("The backlog holds a brute-force burst in its middle: %d failed logins of %d users within a minute. The lock run counts them (--lock-period 1000h, as the backlog is days old) and locks each user once; the run before it forwards them without the lock policy.", o.plan.FailedLogins, LoginUsers))
	}
	if o.runs["single-page20"] && o.page != 20 {
		r, err := runDaemon(o, "daemon, 1 event per POST, --batch 20 (pages of 20, the default)", tp, o.plan.Start, total, []string{"--batch", "20"}, 0, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline("receiver capacity, 1 event per POST", capSingle.Rate)
		rep.Results = append(rep.Results, r)
	}
	exportFlags := []string{"--export-mode", "export"}
	if o.runs["export"] {
		r, err := runDaemon(o, "daemon, export API, 1 event per POST", tp, o.plan.Start, total, exportFlags, 0, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline("receiver capacity, 1 event per POST", capSingle.Rate)
		rep.Results = append(rep.Results, r)
	}
	if o.runs["capacity-batch"] {
		if capBatch, err = runCapacity(o, lg, fmt.Sprintf("receiver capacity, arrays of %d, %d connections", o.batch, o.conns), o.batch, limit); err != nil {
			return err
		}
		rep.Results = append(rep.Results, capBatch)
	}
	if o.runs["batch"] {
		r, err := runDaemon(o, fmt.Sprintf("daemon, --fluentd-batch %d", o.batch), tp, o.plan.Start, total, batchFlags, 0, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline(fmt.Sprintf("receiver capacity, arrays of %d", o.batch), capBatch.Rate)
		rep.Results = append(rep.Results, r)
	}
	if o.runs["export-batch"] {
		r, err := runDaemon(o, fmt.Sprintf("daemon, export API, --fluentd-batch %d", o.batch), tp, o.plan.Start, total, append(slices.Clone(exportFlags), batchFlags...), 0, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline(fmt.Sprintf("receiver capacity, arrays of %d", o.batch), capBatch.Rate)
		rep.Results = append(rep.Results, r)
	}
	if err := forwardRuns(o, rep, lg, tp, total, limit); err != nil {
		return err
	}
	if o.runs["latency"] || o.runs["latency-batch"] {
		// The tail of the backlog: its last latencyEvents audit events and
		// the recordings they announce.
		from := audit[max(len(audit)-o.latencyEvents, 0)].GetTime()
		a, s := totals(audit, recs, from)
		target := float64(o.conns) / o.latency.Seconds() * 0.8
		targetName := fmt.Sprintf("target: %d connections / %s x 0.8", o.conns, o.latency)
		name := fmt.Sprintf("%s on the Fluentd path, ", o.latency)
		for _, run := range []struct {
			key, name string
			flags     []string
		}{{"latency", name + "1 event per POST", nil}, {"latency-batch", name + fmt.Sprintf("--fluentd-batch %d", o.batch), batchFlags}} {
			if !o.runs[run.key] {
				continue
			}
			r, err := runDaemon(o, run.name, tp, from, a+s, run.flags, o.latency, 0, time.Time{})
			if err != nil {
				return err
			}
			r.setBaseline(targetName, target)
			rep.Results = append(rep.Results, r)
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("Latency runs read the last %d audit events of the backlog and their recordings (%d events); the latency is a toxiproxy latency toxic of %s on the receiver's answers. Their CPU per event is mostly fixed costs (start-up, a checkpoint transaction every 10 ms) over few events, and their fetch-to-ack times are the wait of a backlog read ahead (pages of %d and the in-flight window) behind the connections.", a, a+s, o.latency, o.page))
	}
	rep.Notes = append(rep.Notes,
		"Every process (test Teleport server, receiver, load generator or daemon, bench) shares the same 2 cores; the receiver keeps every record in memory and parses each body, as the e2e tests need.",
		"CPU is the daemon's own, from its rusage; peak RSS is its VmHWM, read every 500 ms until it exits (rusage's maxrss counts the bench's own memory, as Go starts children with CLONE_VM); fetch-to-ack quantiles are interpolated in the buckets (x1.5 wide) of the daemon's fetch_to_ack_seconds histogram, scraped from --metrics-addr just before it exits, over all streams.")
	step("all runs took %s", time.Since(began).Round(time.Second))
	return finish(o, rep)
}

// relativeArgs shortens absolute paths under the working directory.
func relativeArgs(args []string) []string {
	wd, err := os.Getwd()
	if err != nil {
		return args
	}
	out := make([]string, len(args))
	for i, a := range args {
		if rel, err := filepath.Rel(wd, a); err == nil && filepath.IsAbs(a) && !strings.HasPrefix(rel, "..") {
			a = rel
		}
		out[i] = a
	}
	return out
}

func (r *result) setBaseline(name string, rate float64) {
	r.BaselineName, r.Baseline = name, rate
	if rate > 0 {
		r.Ratio = r.Rate / rate
	}
}

// receiverURL is the receiver's base URL of scheme: its ready line names
// the https and the forward one.
func receiverURL(rcv *child, scheme string) string {
	for _, u := range strings.Fields(rcv.Ready) {
		if strings.HasPrefix(u, scheme+"://") {
			return u
		}
	}
	return rcv.Ready
}

// runCapacity measures a fresh receiver with the load generator, over
// https.
func runCapacity(o *options, lg *child, name string, batch, limit int) (result, error) {
	return runCapacityOver(o, "https", lg, name, batch, limit)
}

// runCapacityOver is runCapacity over scheme.
func runCapacityOver(o *options, scheme string, lg *child, name string, batch, limit int) (result, error) {
	step("%s: %d events", name, limit)
	rcv, err := startChild(o, "fluentd")
	if err != nil {
		return result{}, err
	}
	answer, err := lg.ask(fmt.Sprintf("run %s %d %d %d", receiverURL(rcv, scheme), o.conns, batch, limit))
	if err != nil {
		rcv.stop()
		return result{}, err
	}
	var r result
	var cpu float64
	if _, err := fmt.Sscanf(answer, "%d %d %f %d %f", &r.Events, &r.Posts, &r.Seconds, &r.Failures, &cpu); err != nil {
		rcv.stop()
		return result{}, fmt.Errorf("load generator: %q", answer)
	}
	stats, _ := rcv.ask("stats")
	var count, unique, requests, handshakes int
	fmt.Sscanf(stats, "%d %d %d %d", &count, &unique, &requests, &handshakes)
	rcvCPU := rcv.stop()
	r.Name, r.Kind = name, "capacity"
	r.Rate = float64(r.Events) / r.Seconds
	r.CPUPer10k = cpu / float64(r.Events) * 10000
	r.ReceiverCPUPer10k = rcvCPU / float64(r.Events) * 10000
	r.Duplicates = count - unique
	r.Missing = r.Events - unique
	r.Handshakes = handshakes
	step("  %d events in %d POSTs in %.1fs: %.0f events/s (load generator CPU %.2fs per 10k events, receiver %.2fs)",
		r.Events, r.Posts, r.Seconds, r.Rate, r.CPUPer10k, r.ReceiverCPUPer10k)
	return r, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// runDaemon runs the binary over the backlog from `from` against a fresh
// receiver, behind a latency proxy when latency > 0. With recordings > 0 it
// also follows how many recordings wait, once the checkpoint passed
// lastUpload.
func runDaemon(o *options, name string, tp *child, from time.Time, expected int, flags []string, latency time.Duration, recordings int, lastUpload time.Time) (result, error) {
	return runDaemonOver(o, "https", name, tp, from, expected, flags, latency, recordings, lastUpload)
}

// runDaemonOver is runDaemon with the Fluentd URLs of scheme (https or
// forward).
func runDaemonOver(o *options, scheme, name string, tp *child, from time.Time, expected int, flags []string, latency time.Duration, recordings int, lastUpload time.Time) (result, error) {
	step("%s: %d events expected", name, expected)
	teleportAddr := tp.Ready
	rcv, err := startChild(o, "fluentd")
	if err != nil {
		return result{}, err
	}
	rcvStopped := false
	defer func() {
		if !rcvStopped {
			rcv.stop()
		}
	}()
	url := receiverURL(rcv, scheme)
	if latency > 0 {
		srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
		p := toxiproxy.NewProxy(srv, "fluentd", "127.0.0.1:0", strings.TrimPrefix(url, scheme+"://"))
		if err := p.Start(); err != nil {
			return result{}, err
		}
		defer p.Stop()
		toxic := fmt.Sprintf(`{"name":"latency","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":%d}}`, latency.Milliseconds())
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
			return result{}, err
		}
		url = scheme + "://" + p.Listen
	}
	slug := regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(name), "-")
	dir := filepath.Join(o.out, "runs", strings.Trim(slug, "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{}, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	pki := pkiFiles(o.pki)
	args := []string{"start",
		"--teleport-addr", teleportAddr, "--teleport-identity", pki.IdentityFile,
		"--fluentd-url", url + "/test.log", "--fluentd-session-url", url + "/session",
		"--fluentd-ca", pki.FluentdCAFile, "--fluentd-cert", pki.FluentdClientCertFile, "--fluentd-key", pki.FluentdClientKeyFile,
		"--fluentd-max-connections", strconv.Itoa(o.conns),
		"--storage", filepath.Join(dir, "storage"),
		"--start-time", from.UTC().Format(time.RFC3339Nano),
		"--skip-session-types", "",
		"--metrics-addr", metricsAddr,
		"--exit-on-last-event",
	}
	if !slices.Contains(flags, "--batch") && !slices.Contains(o.extra, "--batch") {
		args = append(args, "--batch", strconv.Itoa(o.page))
	}
	if !slices.Contains(flags, "--export-mode") && !slices.Contains(o.extra, "--export-mode") {
		// The test server offers both APIs: runs read with search unless
		// they say otherwise.
		args = append(args, "--export-mode", "search")
	}
	args = append(append(args, flags...), o.extra...)
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return result{}, err
	}
	defer logf.Close()
	cmd := exec.Command(o.binary, args...)
	if o.cpuprofile != "" {
		self, err := os.Executable()
		if err != nil {
			return result{}, err
		}
		if err := os.MkdirAll(o.cpuprofile, 0o755); err != nil {
			return result{}, err
		}
		prof := filepath.Join(o.cpuprofile, filepath.Base(dir)+".pprof")
		cmd = exec.Command(self, append([]string{"profiled-daemon", prof}, args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	tpCPU := procCPU(tp.cmd.Process.Pid)
	rcvCPU := procCPU(rcv.cmd.Process.Pid)
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Scrape until the daemon exits; the last scrape is at most 500 ms old.
	var last map[string]float64
	var peaks result
	var hwm float64
	waiting := 0
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(60 * time.Minute)
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-exited:
			break loop
		case <-timeout:
			_ = cmd.Process.Kill()
			waitErr = <-exited
			break loop
		case <-tick.C:
			hwm = max(hwm, procHWM(cmd.Process.Pid))
			m := scrape(metricsAddr)
			if m == nil {
				continue
			}
			last = m
			peak := func(p *float64, v float64) { *p = max(*p, v/(1<<20)) }
			peak(&peaks.PeakHeapInuseMB, m["go_memstats_heap_inuse_bytes"])
			peak(&peaks.PeakHeapSysMB, m["go_memstats_heap_sys_bytes"])
			peak(&peaks.PeakStackMB, m["go_memstats_stack_inuse_bytes"])
			peaks.PeakGoroutines = max(peaks.PeakGoroutines, int(m["go_goroutines"]))
			if recordings > 0 && m["teleport_event_handler_acked_event_timestamp_seconds"] >= float64(lastUpload.Unix()) {
				w := recordings - int(m["teleport_event_handler_sessions_finished_total"]) - int(m["teleport_event_handler_sessions_active"])
				waiting = max(waiting, w)
			}
		}
	}
	wall := time.Since(began).Seconds()
	tpCPU = procCPU(tp.cmd.Process.Pid) - tpCPU
	rcvCPU = procCPU(rcv.cmd.Process.Pid) - rcvCPU
	r := result{Name: name, Kind: "daemon", Expected: expected, Seconds: wall, Command: append([]string{"teleport-event-handler"}, args...), Queued: waiting,
		PeakHeapInuseMB: round(peaks.PeakHeapInuseMB, 1), PeakHeapSysMB: round(peaks.PeakHeapSysMB, 1), PeakStackMB: round(peaks.PeakStackMB, 1), PeakGoroutines: peaks.PeakGoroutines}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
		cpu, _ := rusage(cmd.ProcessState)
		r.MaxRSSMB = hwm
		if expected > 0 {
			r.CPUPer10k = cpu / float64(expected) * 10000
		}
	}
	stats, err := rcv.ask("stats")
	if err != nil {
		return result{}, err
	}
	var count, unique, requests, handshakes int
	fmt.Sscanf(stats, "%d %d %d %d", &count, &unique, &requests, &handshakes)
	r.Events, r.Posts, r.Handshakes = unique, requests, handshakes
	if expected > 0 {
		r.TeleportCPUPer10k = tpCPU / float64(expected) * 10000
		r.ReceiverCPUPer10k = rcvCPU / float64(expected) * 10000
	}
	r.Duplicates = count - unique
	r.Missing = max(expected-unique, 0)
	r.Rate = float64(unique) / wall
	r.P50, r.P99, r.AckSamples = quantiles(last, "teleport_event_handler_fetch_to_ack_seconds")
	r.P50ms, r.P99ms = round(r.P50*1000, 2), round(r.P99*1000, 2)
	if n := last["teleport_event_handler_checkpoint_write_duration_seconds_count"]; n > 0 {
		r.CheckpointWrites = int(n)
		r.CheckpointMeanMs = round(last["teleport_event_handler_checkpoint_write_duration_seconds_sum"]/n*1000, 3)
	}
	if n := last["teleport_event_handler_send_duration_seconds_count"]; n > 0 {
		r.SendMeanMs = round(last["teleport_event_handler_send_duration_seconds_sum"]/n*1000, 3)
	}
	r.Fetched = int(last[`teleport_event_handler_events_fetched_total{stream="audit"}`] + last[`teleport_event_handler_events_fetched_total{stream="session"}`])
	if waitErr != nil || r.Missing > 0 {
		step("  the daemon exited with %v; %d of %d events arrived; log: %s", waitErr, unique, expected, logf.Name())
		if r.Missing > 0 {
			return r, fmt.Errorf("%s: %d events missing", name, r.Missing)
		}
	}
	step("  %d events (%d duplicates) in %d POSTs in %.1fs: %.0f events/s, CPU %.2fs per 10k events, peak RSS %.0f MB, fetch-to-ack p50 %.1f ms p99 %.1f ms",
		unique, r.Duplicates, requests, wall, r.Rate, r.CPUPer10k, r.MaxRSSMB, r.P50ms, r.P99ms)
	step("  %d checkpoint transactions (mean %.2f ms), POST mean %.2f ms; CPU of the Teleport server %.2fs and of the receiver %.2fs per 10k events",
		r.CheckpointWrites, r.CheckpointMeanMs, r.SendMeanMs, r.TeleportCPUPer10k, r.ReceiverCPUPer10k)
	step("  %d TLS handshakes at the receiver for %d POSTs", r.Handshakes, r.Posts)
	step("  peaks: heap in use %.0f MB, heap from the OS %.0f MB, stacks %.1f MB, %d goroutines", r.PeakHeapInuseMB, r.PeakHeapSysMB, r.PeakStackMB, r.PeakGoroutines)
	return r, nil
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

var bucketRe = regexp.MustCompile(`^(\w+)_bucket\{(.*)\}$`)
var leRe = regexp.MustCompile(`le="([^"]+)"`)

// quantiles estimates p50 and p99 of a histogram over every label set, as
// Prometheus' histogram_quantile does (linear within a bucket).
func quantiles(samples map[string]float64, name string) (p50, p99 float64, count int) {
	cum := map[float64]float64{}
	for k, v := range samples {
		m := bucketRe.FindStringSubmatch(k)
		if m == nil || m[1] != name {
			continue
		}
		le := leRe.FindStringSubmatch(m[2])
		if le == nil {
			continue
		}
		bound := math.Inf(1)
		if le[1] != "+Inf" {
			bound, _ = strconv.ParseFloat(le[1], 64)
		}
		cum[bound] += v
	}
	bounds := make([]float64, 0, len(cum))
	for b := range cum {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 {
		return 0, 0, 0
	}
	total := cum[bounds[len(bounds)-1]]
	q := func(q float64) float64 {
		rank := q * total
		prevBound, prevCum := 0.0, 0.0
		for _, b := range bounds {
			if cum[b] >= rank {
				if math.IsInf(b, 1) {
					return prevBound
				}
				if cum[b] == prevCum {
					return b
				}
				return prevBound + (b-prevBound)*(rank-prevCum)/(cum[b]-prevCum)
			}
			prevBound, prevCum = b, cum[b]
		}
		return prevBound
	}
	return q(0.5), q(0.99), int(total)
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func machine() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				kb, _ := strconv.Atoi(strings.Fields(line)[1])
				mem = fmt.Sprintf(", %d GB RAM", (kb+512*1024)/(1024*1024))
			}
		}
	}
	return fmt.Sprintf("%d vCPUs (%s, shared with other jobs)%s, %s, %s/%s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func finish(o *options, rep *report) error {
	rep.Targets = targets(rep)
	table := markdown(rep)
	fmt.Println()
	fmt.Println(table)
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	file := filepath.Join(o.out, "results.json")
	if o.memory {
		file = filepath.Join(o.out, "results-memory.json")
	}
	if err := os.WriteFile(file, append(raw, '\n'), 0o644); err != nil {
		return err
	}
	step("results in %s", file)
	if o.readme != "" {
		if err := updateReadme(o.readme, o.memory, table); err != nil {
			return err
		}
		step("%s updated", o.readme)
	}
	var failed []string
	for _, r := range rep.Results {
		if r.Missing > 0 || r.ExitCode != 0 {
			failed = append(failed, r.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("runs with missing events or a failed daemon: %s", strings.Join(failed, "; "))
	}
	return nil
}

func markdown(rep *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %s. Backlog: %s.\n`%s`\n\n", rep.Date, rep.Machine, rep.Plan, rep.Command)
	if rep.Daemon != "" {
		fmt.Fprintf(&b, "Daemon: `%s`.\n\n", rep.Daemon)
	}
	b.WriteString("| run | events | POSTs | time | events/s | vs | CPU s / 10k events | peak RSS | fetch→ack p50 / p99 |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rep.Results {
		vs := "-"
		if r.Baseline > 0 {
			vs = fmt.Sprintf("%.2f x %s (%.0f/s)", r.Ratio, r.BaselineName, r.Baseline)
		}
		rss, lat := "-", "-"
		if r.Kind == "daemon" {
			rss = fmt.Sprintf("%.0f MB", r.MaxRSSMB)
			lat = fmt.Sprintf("%s / %s", ms(r.P50ms), ms(r.P99ms))
		}
		events := fmt.Sprint(r.Events)
		if r.Duplicates > 0 {
			events += fmt.Sprintf(" (+%d dup)", r.Duplicates)
		}
		if r.Queued > 0 {
			events += fmt.Sprintf("; %d recordings waiting at peak", r.Queued)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f s | %.0f | %s | %.2f | %s | %s |\n",
			r.Name, events, r.Posts, r.Seconds, r.Rate, vs, r.CPUPer10k, rss, lat)
	}
	b.WriteString("\nCPU seconds per 10,000 events, by process (all on the same cores):\n\n")
	b.WriteString("| run | daemon or load generator | receiver | test Teleport server | TLS handshakes at the receiver |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, r := range rep.Results {
		tp := "-"
		if r.Kind == "daemon" {
			tp = fmt.Sprintf("%.2f", r.TeleportCPUPer10k)
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s | %d |\n", r.Name, r.CPUPer10k, r.ReceiverCPUPer10k, tp, r.Handshakes)
	}
	if len(rep.Targets) > 0 {
		b.WriteString("\nTargets:\n")
		for _, t := range rep.Targets {
			fmt.Fprintf(&b, "\n- %s", t)
		}
		b.WriteString("\n")
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return strings.TrimRight(b.String(), "\n")
}

// targets says whether the figures meet the targets.
func targets(rep *report) []string {
	var out []string
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	var capacity *result
	for i, r := range rep.Results {
		if r.Kind == "capacity" && strings.Contains(r.Name, "1 event per POST") {
			capacity = &rep.Results[i]
		}
	}
	for _, r := range rep.Results {
		switch {
		case r.Kind != "daemon":
		case strings.HasPrefix(r.BaselineName, "receiver capacity, 1 event"):
			line := fmt.Sprintf("%s: at least 0.8 x the receiver's capacity with single-event POSTs: %.2f, %s", r.Name, r.Ratio, verdict(r.Ratio >= 0.8))
			if capacity != nil && r.Ratio < 0.8 {
				a := capacity.CPUPer10k + capacity.ReceiverCPUPer10k
				b := r.CPUPer10k + r.ReceiverCPUPer10k + r.TeleportCPUPer10k
				line += fmt.Sprintf(" (CPU per 10,000 events: load generator and receiver %.2f s, daemon, receiver and Teleport server %.2f s; with both runs using the same cores to the full, %.2f is about the most the ratio can be)", a, b, a/b)
			}
			out = append(out, line)
		case strings.HasPrefix(r.BaselineName, "target:"):
			out = append(out, fmt.Sprintf("%s: at least %.0f events/s (%s): %.0f, %s", r.Name, r.Baseline, strings.TrimPrefix(r.BaselineName, "target: "), r.Rate, verdict(r.Ratio >= 1)))
		}
		if r.Kind == "daemon" && r.Queued > 0 {
			out = append(out, fmt.Sprintf("%s: peak RSS under 150 MB with this backlog: %.0f MB, %s", r.Name, r.MaxRSSMB, verdict(r.MaxRSSMB < 150)))
		}
	}
	return append(out, batchTargets(rep, verdict)...)
}

// batchTargets: batched sends bound by CPU (at least 0.6 of the
// receiver's capacity with the same batches), and forward batched at least
// 3 x HTTP batched events/s at a third of the CPU of one event per POST.
func batchTargets(rep *report, verdict func(bool) string) []string {
	find := func(match func(result) bool) *result {
		for i, r := range rep.Results {
			if r.Kind == "daemon" && match(r) {
				return &rep.Results[i]
			}
		}
		return nil
	}
	single := find(func(r result) bool { return r.Name == "daemon, 1 event per POST" })
	httpBatch := find(func(r result) bool { return strings.HasPrefix(r.BaselineName, "receiver capacity, arrays") })
	fwdBatch := find(func(r result) bool {
		return strings.HasPrefix(r.Name, "daemon, forward, --fluentd-batch") && !strings.Contains(r.Name, "gzip")
	})
	capacities := map[string]*result{}
	for i, r := range rep.Results {
		if r.Kind == "capacity" {
			capacities[r.Name] = &rep.Results[i]
		}
	}
	cpu := func(r *result) float64 { return r.CPUPer10k + r.ReceiverCPUPer10k + r.TeleportCPUPer10k }
	var out []string
	for _, r := range []*result{httpBatch, fwdBatch} {
		if r == nil || r.Baseline <= 0 {
			continue
		}
		line := fmt.Sprintf("%s: at least 0.6 x the receiver's capacity with the same batches: %.2f, %s", r.Name, r.Ratio, verdict(r.Ratio >= 0.6))
		for name, c := range capacities {
			if strings.HasPrefix(name, r.BaselineName) && r.Ratio < 0.6 {
				line += fmt.Sprintf(" (CPU per 10,000 events: load generator and receiver %.2f s, daemon, receiver and Teleport server %.2f s: with both runs using the same cores to the full, %.2f is about the most the ratio can be)",
					c.CPUPer10k+c.ReceiverCPUPer10k, cpu(r), (c.CPUPer10k+c.ReceiverCPUPer10k)/cpu(r))
			}
		}
		out = append(out, line)
	}
	if fwdBatch != nil && httpBatch != nil {
		x := fwdBatch.Rate / httpBatch.Rate
		line := fmt.Sprintf("%s: at least 3 x the events/s of %s: %.0f / %.0f = %.2f, %s", fwdBatch.Name, httpBatch.Name, fwdBatch.Rate, httpBatch.Rate, x, verdict(x >= 3))
		if x < 3 {
			line += fmt.Sprintf(" (all three processes' CPU per 10,000 events: %.2f s over forward, %.2f s over HTTP: on the same cores the ratio can be about %.2f; the test Teleport server and the receiver alone take %.2f s over forward, so even a daemon that cost nothing would stay under %.1f x)",
				cpu(fwdBatch), cpu(httpBatch), cpu(httpBatch)/cpu(fwdBatch), fwdBatch.ReceiverCPUPer10k+fwdBatch.TeleportCPUPer10k,
				cpu(httpBatch)/(fwdBatch.ReceiverCPUPer10k+fwdBatch.TeleportCPUPer10k))
		}
		out = append(out, line)
	}
	if fwdBatch != nil && single != nil {
		out = append(out, fmt.Sprintf("%s: daemon CPU per 10,000 events at most a third of %s: %.2f s against %.2f / 3 = %.2f s, %s",
			fwdBatch.Name, single.Name, fwdBatch.CPUPer10k, single.CPUPer10k, single.CPUPer10k/3, verdict(fwdBatch.CPUPer10k <= single.CPUPer10k/3)))
	}
	return out
}

func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// updateReadme replaces the bench (or bench-memory) section of the README.
func updateReadme(path string, memory bool, table string) error {
	begin, end := "<!-- bench:begin -->", "<!-- bench:end -->"
	if memory {
		begin, end = "<!-- bench-memory:begin -->", "<!-- bench-memory:end -->"
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(raw)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return errors.New(path + " has no " + begin + " ... " + end + " section")
	}
	s = s[:i+len(begin)] + "\n" + table + "\n" + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

// forwardRuns measure the forward protocol beside HTTP, in the same run:
// the receiver's capacity with messages of forwardBatch events, and the
// daemon with one event per message, with forwardBatch and with gzip.
func forwardRuns(o *options, rep *report, lg *child, tp *child, total, limit int) error {
	var capFwd result
	if o.runs["capacity-forward"] {
		var err error
		if capFwd, err = runCapacityOver(o, "forward", lg, fmt.Sprintf("receiver capacity, forward messages of %d, %d connections", o.forwardBatch, o.conns), o.forwardBatch, limit); err != nil {
			return err
		}
		rep.Results = append(rep.Results, capFwd)
	}
	batch := strconv.Itoa(o.forwardBatch)
	for _, run := range []struct {
		key, name string
		flags     []string
	}{
		{"forward-single", "daemon, forward, 1 event per message", []string{"--fluentd-batch", "1"}},
		{"forward-batch", "daemon, forward, --fluentd-batch " + batch, []string{"--fluentd-batch", batch}},
		{"forward-gzip", "daemon, forward, --fluentd-batch " + batch + ", gzip", []string{"--fluentd-batch", batch, "--fluentd-compress", "gzip"}},
	} {
		if !o.runs[run.key] {
			continue
		}
		r, err := runDaemonOver(o, "forward", run.name, tp, o.plan.Start, total, run.flags, 0, 0, time.Time{})
		if err != nil {
			return err
		}
		r.setBaseline(fmt.Sprintf("receiver capacity, forward messages of %d", o.forwardBatch), capFwd.Rate)
		rep.Results = append(rep.Results, r)
	}
	return nil
}
