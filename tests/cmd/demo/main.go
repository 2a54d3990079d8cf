// Command demo runs the real daemon against a local Teleport-compatible test
// server (seeded with audit events) and a local Fluentd-compatible mTLS
// receiver, with freshly generated certificates, and shows what arrived.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"

	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	binary := flag.String("binary", "bin/teleport-event-handler", "the daemon to run")
	out := flag.String("out", "demo-out", "directory for certificates, state and received records (emptied first)")
	n := flag.Int("events", 2000, "audit events to seed")
	serveMode := flag.Bool("serve", false, "only run the test Teleport server and the receiver, until interrupted, for a daemon started by hand")
	teleportAddr := flag.String("teleport-addr", "127.0.0.1:0", "where the test Teleport server listens (127.0.0.1 only)")
	fluentdAddr := flag.String("fluentd-addr", "127.0.0.1:0", "where the receiver's HTTPS input listens (127.0.0.1 only; forward on another port)")
	flag.Parse()

	b, err := newBed(*out, *n, *teleportAddr, *fluentdAddr)
	if err != nil {
		return err
	}
	defer b.close()
	if *serveMode {
		return serve(b, *binary)
	}
	return demo(b, *binary)
}

// bed is the demo's test Teleport server and receiver, seeded, with the
// daemon's credentials.
type bed struct {
	out           string
	dirs          map[string]string
	pki           *testpki.Bundle
	tp            *teleportsrv.Server
	fd            *fluentdsrv.Receiver
	start         time.Time
	n             int
	want          map[string]int // records expected by tag
	sessionEvents int
}

func (b *bed) close() {
	if b.fd != nil {
		b.fd.Close()
	}
	if b.tp != nil {
		b.tp.Close()
	}
}

// newBed empties out, generates certificates and starts the servers with
// n audit events and the recording of each session.upload among them.
func newBed(out string, n int, teleportAddr, fluentdAddr string) (*bed, error) {
	for _, addr := range []string{teleportAddr, fluentdAddr} {
		if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
			return nil, fmt.Errorf("%s: the test servers listen on 127.0.0.1 only", addr)
		}
	}
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	b := &bed{out: out, dirs: map[string]string{}, n: n}
	for _, d := range []string{"certs", "storage", "received"} {
		b.dirs[d] = filepath.Join(out, d)
		if err := os.MkdirAll(b.dirs[d], 0o700); err != nil {
			return nil, err
		}
	}
	step("generating certificates in %s", b.dirs["certs"])
	var err error
	if b.pki, err = testpki.Generate(b.dirs["certs"]); err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	if b.tp, err = teleportsrv.Start(teleportsrv.Config{TLS: b.pki.ServerTLS(b.pki.TeleportServer, b.pki.TeleportCA), Addr: teleportAddr}); err != nil {
		return nil, fmt.Errorf("test teleport server: %w", err)
	}
	if err := b.seed(); err != nil {
		b.close()
		return nil, err
	}
	b.fd, err = fluentdsrv.Start(fluentdsrv.Config{TLS: b.pki.ServerTLS(b.pki.FluentdServer, b.pki.FluentdCA), Addr: fluentdAddr, Dir: b.dirs["received"]})
	if err != nil {
		b.close()
		return nil, fmt.Errorf("test fluentd receiver: %w", err)
	}
	step("Fluentd-compatible receiver (mTLS, client certificates required) on %s and %s", b.fd.URL(), b.fd.ForwardURL())
	return b, nil
}

// seed adds the audit events and recordings to the test Teleport server.
func (b *bed) seed() error {
	b.start = time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	events := teleportsrv.GenerateAuditEvents(b.n, b.start, 3*time.Second, 1)
	if err := b.tp.AddEvents(events...); err != nil {
		return err
	}
	// Every session.upload event gets its recording; print events are
	// skipped by default (--skip-session-types), the rest are expected.
	b.want = map[string]int{"test.log": b.n}
	for i, ev := range events {
		up, ok := ev.(*apievents.SessionUpload)
		if !ok {
			continue
		}
		rec := teleportsrv.GenerateRecording(up.SessionID, 20+i%200, ev.GetTime().Add(-10*time.Minute))
		if err := b.tp.AddRecording(up.SessionID, rec...); err != nil {
			return err
		}
		for _, r := range rec {
			if r.GetType() != "print" {
				b.want["session."+up.SessionID+".log"]++
				b.sessionEvents++
			}
		}
	}
	step("test Teleport server on %s with %d audit events from %s and %d recordings (%d session events to forward)",
		b.tp.Addr(), b.n, b.start.Format(time.RFC3339), len(b.want)-1, b.sessionEvents)
	return nil
}

// demo runs the daemon until it caught up and shows what arrived.
func demo(b *bed, binary string) error {
	tp, fd, pki, dirs, start, want, sessionEvents := b.tp, b.fd, b.pki, b.dirs, b.start, b.want, b.sessionEvents
	args := []string{"start",
		"--teleport-addr", tp.Addr(),
		"--teleport-identity", pki.IdentityFile,
		"--fluentd-url", fd.URL() + "/test.log",
		"--fluentd-session-url", fd.URL() + "/session",
		"--fluentd-ca", pki.FluentdCAFile, "--fluentd-cert", pki.FluentdClientCertFile, "--fluentd-key", pki.FluentdClientKeyFile,
		"--storage", dirs["storage"],
		"--start-time", start.Format(time.RFC3339),
		"--batch", "100",
		"--exit-on-last-event",
		// The log is a file, JSON by default; the demo's is for reading.
		"--log-format", "text",
	}
	logPath := filepath.Join(b.out, "daemon.log")
	step("running %s %s (its log: %s)", binary, strings.Join(args, " "), logPath)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	began := time.Now()
	runErr := cmd.Run()
	took := time.Since(began)
	if line := exitLine(logPath); line != "" {
		fmt.Printf("  it says: %s\n", line)
	}
	if runErr != nil {
		return fmt.Errorf("the daemon failed (see %s): %w", logPath, runErr)
	}

	step("what arrived (%s)", took.Round(time.Millisecond))
	tags := fd.Tags()
	sort.Strings(tags)
	missing, sessionRecords, sessionTags := 0, 0, 0
	for _, tag := range tags {
		got := fd.CountTag(tag)
		missing += max(want[tag]-got, 0)
		if tag == "test.log" {
			fmt.Printf("  %-44s %6d records  %s\n", tag, got, filepath.Join(dirs["received"], tag+".jsonl"))
			continue
		}
		sessionRecords += got
		sessionTags++
		if sessionTags <= 3 {
			fmt.Printf("  %-44s %6d records  %s\n", tag, got, filepath.Join(dirs["received"], tag+".jsonl"))
		}
	}
	for tag, n := range want {
		if fd.CountTag(tag) == 0 {
			missing += n
		}
	}
	if sessionTags > 3 {
		fmt.Printf("  ... and %d more session.<id>.log tags\n", sessionTags-3)
	}
	fmt.Printf("  sessions: %d recordings, %d session events\n", sessionTags, sessionRecords)
	dups := 0
	for _, c := range fd.CountByUID() {
		dups += c - 1
	}
	fmt.Printf("  total: %d records in %d requests, %d missing, %d duplicates\n", fd.Count(), fd.Requests(), missing, dups)
	if first := firstLine(filepath.Join(dirs["received"], "test.log.jsonl")); first != "" {
		fmt.Printf("  first record %s\n", first)
	}
	fmt.Printf("  state        %s\n", dirs["storage"])
	if missing != 0 || dups != 0 || fd.Count() != b.n+sessionEvents {
		return fmt.Errorf("expected %d audit and %d session records, none missing or twice", b.n, sessionEvents)
	}
	fmt.Printf(`
Try next:
  - the daemon's log (--log-format text): %s
  - what Fluentd received, by tag:         %s
  - where the daemon stands, what is stuck: %s status --storage %s --teleport-addr %s
  - the options:                           %s start --help
  - the whole test suite, and the faults:  make test, make chaos
`, logPath, dirs["received"], binary, dirs["storage"], tp.Addr(), binary)
	return nil
}

// exitLine is the daemon's exit line (the one that counts what was
// delivered) in its log at path, else the log's last line.
func exitLine(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "delivered=") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func firstLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if sc.Scan() {
		line := sc.Text()
		if len(line) > 160 {
			line = line[:160] + "..."
		}
		return line
	}
	return ""
}
