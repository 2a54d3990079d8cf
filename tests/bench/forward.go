package main

import (
	"fmt"
	"strconv"
)

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
		{"forward-export", "daemon, forward, export API, --fluentd-batch " + batch, append(exportFlags(), "--fluentd-batch", batch)},
		{"forward-gzip", "daemon, forward, --fluentd-batch " + batch + ", gzip", []string{"--fluentd-batch", batch, "--fluentd-compress", "gzip"}},
	} {
		if !o.runs[run.key] {
			continue
		}
		if err := addDaemonRun(o, rep, tp, "forward", run.name, total, run.flags, fmt.Sprintf("receiver capacity, forward messages of %d", o.forwardBatch), capFwd.Rate); err != nil {
			return err
		}
	}
	return nil
}
