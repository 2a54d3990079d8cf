// Command demo runs the real daemon against a local Teleport-compatible test
// server (seeded with audit events) and a local Fluentd-compatible mTLS
// receiver, with freshly generated certificates, and shows what arrived.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
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
	flag.Parse()

	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	dirs := map[string]string{}
	for _, d := range []string{"certs", "storage", "received"} {
		dirs[d] = filepath.Join(*out, d)
		if err := os.MkdirAll(dirs[d], 0o700); err != nil {
			return err
		}
	}

	step("generating certificates in %s", dirs["certs"])
	pki, err := testpki.Generate(dirs["certs"])
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}

	tp, err := teleportsrv.Start(teleportsrv.Config{TLS: pki.ServerTLS(pki.TeleportServer, pki.TeleportCA)})
	if err != nil {
		return fmt.Errorf("test teleport server: %w", err)
	}
	defer tp.Close()
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	events := teleportsrv.GenerateAuditEvents(*n, start, 3*time.Second, 1)
	if err := tp.AddEvents(events...); err != nil {
		return err
	}
	// Every session.upload event gets its recording; print events are
	// skipped by default (--skip-session-types), the rest are expected.
	want := map[string]int{"test.log": *n}
	sessionEvents := 0
	for i, ev := range events {
		up, ok := ev.(*apievents.SessionUpload)
		if !ok {
			continue
		}
		rec := teleportsrv.GenerateRecording(up.SessionID, 20+i%200, ev.GetTime().Add(-10*time.Minute))
		if err := tp.AddRecording(up.SessionID, rec...); err != nil {
			return err
		}
		for _, r := range rec {
			if r.GetType() != "print" {
				want["session."+up.SessionID+".log"]++
				sessionEvents++
			}
		}
	}
	step("test Teleport server on %s with %d audit events from %s and %d recordings (%d session events to forward)",
		tp.Addr(), *n, start.Format(time.RFC3339), len(want)-1, sessionEvents)

	fd, err := fluentdsrv.Start(fluentdsrv.Config{TLS: pki.ServerTLS(pki.FluentdServer, pki.FluentdCA), Dir: dirs["received"]})
	if err != nil {
		return fmt.Errorf("test fluentd receiver: %w", err)
	}
	defer fd.Close()
	step("Fluentd-compatible receiver (mTLS, client certificates required) on %s", fd.URL())

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
	logPath := filepath.Join(*out, "daemon.log")
	step("running %s %s (its log: %s)", *binary, strings.Join(args, " "), logPath)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, *binary, args...)
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
	if missing != 0 || dups != 0 || fd.Count() != *n+sessionEvents {
		return fmt.Errorf("expected %d audit and %d session records, none missing or twice", *n, sessionEvents)
	}
	fmt.Printf(`
Try next:
  - the daemon's log (--log-format text): %s
  - what Fluentd received, by tag:         %s
  - where the daemon stands, what is stuck: %s status --storage %s --teleport-addr %s
  - the options:                           %s start --help
  - the whole test suite, and the faults:  make test, make chaos
`, logPath, dirs["received"], *binary, dirs["storage"], tp.Addr(), *binary)
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
