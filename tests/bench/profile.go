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
	flags, err := startFlags(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 2
	}
	inv, err := config.Resolve(flags, os.LookupEnv)
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

// startFlags turns the daemon's command line as the bench writes it (start,
// then --flag VALUE, --flag=VALUE, or --flag alone for a switch) into the
// options' text by long name, which config resolves.
func startFlags(args []string) (map[string]string, error) {
	switches := map[string]bool{}
	for _, f := range config.Flags() {
		switches[f.Long] = f.Switch
	}
	given := map[string]string{}
	for i := 0; i < len(args); i++ {
		if i == 0 && args[i] == "start" {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(args[i], "--"), "=")
		switch isSwitch, known := switches[name]; {
		case !known || !strings.HasPrefix(args[i], "--"):
			return nil, fmt.Errorf("not an option of start: %q", args[i])
		case hasValue:
		case isSwitch:
			value = "true"
		case i+1 < len(args):
			i++
			value = args[i]
		default:
			return nil, fmt.Errorf("%s wants a value", args[i])
		}
		given[name] = value
	}
	return given, nil
}
