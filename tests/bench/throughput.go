package main

import (
	"fmt"
	"strconv"
)

// singleBaseline is the capacity the runs of one event per POST compare
// with.
const singleBaseline = "receiver capacity, 1 event per POST"

// batchFlags are the daemon flags of the batched HTTP runs.
func (o *options) batchFlags() []string { return []string{"--fluentd-batch", strconv.Itoa(o.batch)} }

// exportFlags make a run read with the export API.
func exportFlags() []string { return []string{"--export-mode", "export"} }

// throughputRuns measure events/s over the whole backlog, in this order:
// one event per POST (the receiver's capacity, the daemon, with the lock
// policy, with pages of 20, with the export API), then batched (the same
// over arrays), then over forward.
func throughputRuns(o *options, rep *report, lg, tp *child, total int) error {
	limit := o.capacityLimit
	if limit <= 0 {
		limit = total
	}
	capSingle, err := singleRuns(o, rep, lg, tp, total, limit)
	if err != nil {
		return err
	}
	if err := lockRun(o, rep, tp, total, capSingle); err != nil {
		return err
	}
	if err := readRuns(o, rep, tp, total, capSingle); err != nil {
		return err
	}
	if err := batchRuns(o, rep, lg, tp, total, limit); err != nil {
		return err
	}
	if err := forwardRuns(o, rep, lg, tp, total, limit); err != nil {
		return err
	}
	return relpRuns(o, rep, tp, total)
}

// singleRuns measure the receiver's capacity with one event per POST and
// the daemon against it; they return the capacity (0 when not measured).
func singleRuns(o *options, rep *report, lg, tp *child, total, limit int) (float64, error) {
	var capSingle result
	if o.runs["capacity"] {
		var err error
		if capSingle, err = runCapacity(o, lg, fmt.Sprintf("receiver capacity, 1 event per POST, %d connections", o.conns), 1, limit); err != nil {
			return 0, err
		}
		rep.Results = append(rep.Results, capSingle)
	}
	if o.runs["single"] {
		if err := addDaemonRun(o, rep, tp, "https", "daemon, 1 event per POST", total, nil, singleBaseline, capSingle.Rate); err != nil {
			return 0, err
		}
	}
	return capSingle.Rate, nil
}

// readRuns measure one event per POST read otherwise: in pages of 20 (the
// original's default) and with the export API.
func readRuns(o *options, rep *report, tp *child, total int, capacity float64) error {
	if o.runs["single-page20"] && o.page != 20 {
		if err := addDaemonRun(o, rep, tp, "https", "daemon, 1 event per POST, --batch 20 (pages of 20, the original's default)", total, []string{"--batch", "20"}, singleBaseline, capacity); err != nil {
			return err
		}
	}
	if o.runs["export"] {
		return addDaemonRun(o, rep, tp, "https", "daemon, export API, 1 event per POST", total, exportFlags(), singleBaseline, capacity)
	}
	return nil
}

// batchRuns measure the receiver's capacity with arrays of o.batch events
// and the daemon with --fluentd-batch against it, reading with search and
// with the export API.
func batchRuns(o *options, rep *report, lg, tp *child, total, limit int) error {
	var capBatch result
	if o.runs["capacity-batch"] {
		var err error
		if capBatch, err = runCapacity(o, lg, fmt.Sprintf("receiver capacity, arrays of %d, %d connections", o.batch, o.conns), o.batch, limit); err != nil {
			return err
		}
		rep.Results = append(rep.Results, capBatch)
	}
	baseline := fmt.Sprintf("receiver capacity, arrays of %d", o.batch)
	if o.runs["batch"] {
		if err := addDaemonRun(o, rep, tp, "https", fmt.Sprintf("daemon, --fluentd-batch %d", o.batch), total, o.batchFlags(), baseline, capBatch.Rate); err != nil {
			return err
		}
	}
	if o.runs["export-batch"] {
		return addDaemonRun(o, rep, tp, "https", fmt.Sprintf("daemon, export API, --fluentd-batch %d", o.batch), total, append(exportFlags(), o.batchFlags()...), baseline, capBatch.Rate)
	}
	return nil
}
