package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The report checks issue 29's targets on the rows it finds: CPU per
// event on the export path, search within 15 % of export over forward,
// 2 x the build before (-before), and the daemon below the receiver or
// the Teleport server at the highest rate.
func TestReportChecksTheCPUTargets(t *testing.T) {
	daemon := func(name string, rate, cpuPer10k, rcv, tp float64) result {
		return result{Name: name, Kind: "daemon", Rate: rate, CPUPer10k: cpuPer10k, ReceiverCPUPer10k: rcv, TeleportCPUPer10k: tp}
	}
	rep := &report{Results: []result{
		daemon("before: daemon, forward, --fluentd-batch 100", 13000, 0.60, 0.2, 0.3),
		daemon("daemon, forward, --fluentd-batch 100", 27000, 0.17, 0.17, 0.19),
		daemon("daemon, forward, export API, --fluentd-batch 100", 32000, 0.16, 0.15, 0.19),
		daemon("daemon, export API, --fluentd-batch 20", 23000, 0.23, 0.24, 0.16),
		daemon("daemon, export API, 1 event per POST", 9600, 0.85, 0.6, 0.2),
	}}
	got := strings.Join(cpuTargets(rep, verdictOf), "\n")
	for _, want := range []string{
		"daemon, forward, export API, --fluentd-batch 100: daemon CPU at most 10 µs per event: 16.0 µs, **not met**",
		"daemon, export API, --fluentd-batch 20: daemon CPU at most 25 µs per event: 23.0 µs, met",
		"daemon, export API, 1 event per POST: daemon CPU at most 80 µs per event: 85.0 µs, **not met**",
		"daemon, forward, --fluentd-batch 100: within 15 % of the events/s of daemon, forward, export API, --fluentd-batch 100: 27000 / 32000 = 0.84, **not met**",
		"daemon, forward, --fluentd-batch 100: at least 2 x the events/s of the build before: 27000 / 13000 = 2.08, met",
		"daemon, forward, export API, --fluentd-batch 100 (the highest rate): daemon CPU 16.0 µs per event, below the receiver's (15.0) or the Teleport server's (19.0): met",
	} {
		require.Contains(t, got, want)
	}
	// Without the rows, no line.
	require.Empty(t, cpuTargets(&report{}, verdictOf))
}
