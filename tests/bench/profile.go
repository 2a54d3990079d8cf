package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/daemon"
	"github.com/fdfwd/teleport-event-handler/internal/logging"
)

// profiledDaemon is the daemon's main with a CPU profile written to file:
// `bench -cpuprofile DIR` runs the daemon this way (the bench binary
// re-executed) instead of the binary given with -binary.
func profiledDaemon(file string, args []string) int {
	inv, err := config.Parse(args, os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	f, err := os.Create(file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	defer pprof.StopCPUProfile()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	log := logging.New(os.Stderr, inv.Config.LogFormat, inv.Config.Debug)
	err = daemon.Run(ctx, inv.Config, log, daemon.Options{})
	// The heap as the run ends, for memory hunts: go tool pprof -sample_index=inuse_space.
	if hf, herr := os.Create(strings.TrimSuffix(file, ".pprof") + ".heap"); herr == nil {
		runtime.GC()
		_ = pprof.WriteHeapProfile(hf)
		hf.Close()
	}
	if err != nil {
		log.Error().Err(err).Msg("teleport-event-handler stopped with an error")
		return 1
	}
	return 0
}
