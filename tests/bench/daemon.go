package main

import (
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/tests/rsyslogsrv"
)

// addDaemonRun runs the daemon over the whole backlog with the Fluentd URLs
// of scheme, as runDaemonOver, and adds the result to the report, compared
// with the baseline's rate.
// With -before, the earlier build runs first, as a row of its own.
func addDaemonRun(o *options, rep *report, tp *child, scheme, name string, total int, flags []string, baseline string, rate float64) error {
	if o.before != "" && o.cpuprofile == "" {
		before := *o
		before.binary, before.before = o.before, ""
		if err := addDaemonRun(&before, rep, tp, scheme, "before: "+name, total, flags, baseline, rate); err != nil {
			return err
		}
	}
	r, err := runDaemonOver(o, scheme, name, tp, o.plan.Start, total, flags, 0, 0, time.Time{})
	if err != nil {
		return err
	}
	r.setBaseline(baseline, rate)
	rep.Results = append(rep.Results, r)
	return nil
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
	rcv, err := startReceiver(o, scheme)
	if err != nil {
		return result{}, err
	}
	rcvStopped := false
	defer func() {
		if !rcvStopped {
			rcv.stop()
		}
	}()
	url := rcv.url(scheme)
	if scheme == rsyslogsrv.RELP {
		scheme = "relp+tls"
	}
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
	if o.page > 0 && !slices.Contains(flags, "--batch") && !slices.Contains(o.extra, "--batch") {
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
	rcvCPU := procCPU(rcv.pid())
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
	rcvCPU = procCPU(rcv.pid()) - rcvCPU
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
	count, unique, requests, handshakes, err := rcv.tally()
	if err != nil {
		return result{}, err
	}
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
