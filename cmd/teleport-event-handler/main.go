// Command teleport-event-handler ships Teleport's audit log to Fluentd. It is
// a drop-in replacement for Teleport's Event Handler plugin.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
	"github.com/fdfwd/teleport-event-handler/internal/commands/deadletters"
	"github.com/fdfwd/teleport-event-handler/internal/commands/repair"
	"github.com/fdfwd/teleport-event-handler/internal/daemon"
	"github.com/fdfwd/teleport-event-handler/internal/logging"
	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// exitIncomplete is the exit status of a run with --exit-on-last-event that
// caught up without delivering everything (events dead-lettered,
// recordings given up, export chunks parked): apart from 1, a failure, and
// 2, a configuration error.
const exitIncomplete = 3

// Set with -ldflags "-X main.version=..." by make build.
var version = "dev"

func main() {
	os.Exit(run())
}

func run() int {
	inv, err := parse(os.Args[1:], os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	if inv.command != "start" {
		for _, w := range inv.warnings {
			fmt.Fprintln(os.Stderr, "warning:", w)
		}
	}
	switch inv.command {
	case "":
		fmt.Fprint(os.Stdout, inv.help)
		return 0
	case "version":
		fmt.Printf("teleport-event-handler %s\n", version)
		return 0
	case "configure":
		if _, err := configure.Run(inv.configure, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		return 0
	case "status":
		return printStatus(inv)
	case "dead-letters":
		return deadLetters(inv)
	case "sessions", "export":
		dir := persistence.Dir(inv.start.Config.Storage, inv.start.Config.Teleport.Addr)
		act := repair.Sessions
		if inv.command == "export" {
			act = repair.Export
		}
		if err := act(dir, inv.sub, inv.args, inv.all, os.Stdout, time.Now().UTC()); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		return 0
	}

	cfg := inv.start.Config
	log := logging.New(os.Stderr, cfg.LogFormat, cfg.Debug)

	// The first signal stops gracefully; a second one exits at once. The
	// handler is in place before the first line is logged: a supervisor
	// that saw the daemon start may stop it at once, and a SIGTERM must
	// then still drain and exit 0, not kill it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		log.Info().Str("signal", sig.String()).Msg("stopping: finishing in-flight events (send the signal again to exit at once)")
		cancel()
		sig = <-sigs
		log.Warn().Str("signal", sig.String()).Msg("second signal: exiting now; the next start resends unconfirmed events")
		os.Exit(1)
	}()
	log.Info().Str("version", version).Msg("starting teleport-event-handler")
	for _, w := range inv.warnings {
		log.Warn().Msg(w)
	}

	opts := daemon.Options{Version: version}
	if isatty.IsTerminal(os.Stderr.Fd()) {
		opts.Progress = os.Stderr
	}
	if err := daemon.Run(ctx, cfg, log, opts); err != nil {
		if errors.Is(err, daemon.ErrIncomplete) {
			log.Error().Err(err).Msg("teleport-event-handler caught up, but not every event was delivered")
			return exitIncomplete
		}
		log.Error().Err(err).Msg("teleport-event-handler stopped with an error")
		return 1
	}
	log.Info().Msg("stopped")
	return 0
}

// printStatus prints the status report of the configured state, for people
// or (--json) for scripts.
func printStatus(inv *invocation) int {
	dir := persistence.Dir(inv.start.Config.Storage, inv.start.Config.Teleport.Addr)
	now := time.Now()
	r, err := status.Read(context.Background(), dir, now)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	if inv.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		return 0
	}
	r.Text(os.Stdout, now)
	return 0
}

// deadLetters runs dead-letters list, replay or purge.
func deadLetters(inv *invocation) int {
	cfg := inv.start.Config
	dir := persistence.Dir(cfg.Storage, cfg.Teleport.Addr)
	file := filepath.Join(dir, persistence.DeadLetterFile)
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	switch inv.sub {
	case "list":
		n, bad, err := deadletters.List(dir, os.Stdout)
		if err != nil {
			return fail(err)
		}
		reportBad(file, bad)
		fmt.Fprintf(os.Stderr, "%d dead letter(s) in %s\n", n, file)
	case "purge":
		n, bad, err := deadletters.Purge(dir, func(n int, path string, bad []persistence.BadLine) bool {
			if inv.yes {
				return true
			}
			stay := ""
			if len(bad) > 0 {
				stay = fmt.Sprintf(" (The %d line(s) that are not letters stay.)", len(bad))
			}
			fmt.Fprintf(os.Stderr, "Remove the %d dead letter(s) of %s for good? They are not sent.%s [y/N] ", n, path, stay)
			answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
			return strings.EqualFold(strings.TrimSpace(answer), "y") || strings.EqualFold(strings.TrimSpace(answer), "yes")
		})
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(os.Stderr, "%d dead letter(s) removed\n", n)
		reportBad(file, bad)
	case "replay":
		return replay(cfg, dir)
	}
	return 0
}

// reportBad names the lines of the dead-letter file that are not letters:
// they are neither listed, sent nor purged, and stay in the file.
func reportBad(path string, bad []persistence.BadLine) {
	for _, b := range bad {
		fmt.Fprintf(os.Stderr, "warning: %s, %s\n", path, b)
	}
	if len(bad) > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d line(s) of %s hold bytes that are not a dead letter (a write cut short, or an edit): "+
			"they are not sent nor purged and stay in the file; repair them into letters or remove them by hand, "+
			"with the daemon stopped\n", len(bad), path)
	}
}

// replay sends the dead letters again; Ctrl-C stops it, leaving the rest
// in the file.
func replay(cfg *config.Config, dir string) int {
	log := logging.New(os.Stderr, cfg.LogFormat, cfg.Debug)
	t, err := daemon.Transports(cfg)
	if err != nil {
		log.Error().Err(err).Msg("cannot reach Fluentd")
		return 1
	}
	defer t.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := deadletters.Replay(ctx, dir, t, cfg.Fluentd.MaxConnections, daemon.LetterBody(cfg), log)
	if err != nil {
		log.Error().Err(err).Msg("replaying the dead letters failed")
		return 1
	}
	log.Info().Int("delivered", res.Replayed).Int("dead_lettered", res.Kept).Int("left", res.Left).
		Int("unreadable", res.Unreadable).Msg("dead letters replayed: the delivered ones are removed from the file")
	if res.Kept > 0 || res.Left > 0 || res.Unreadable > 0 {
		return exitIncomplete
	}
	return 0
}
