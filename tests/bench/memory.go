package main

import (
	"fmt"
	"time"
)

// memoryRun measures the daemon's memory over the whole backlog with every
// recording registered from the first audit events, so that they wait at
// once: peak RSS and the most recordings waiting at one time.
func memoryRun(o *options, rep *report, tp *child, recs []recording, total int) error {
	lastUpload := time.Time{}
	for _, r := range recs {
		if r.Upload.After(lastUpload) {
			lastUpload = r.Upload
		}
	}
	r, err := runDaemon(o, "daemon, 1 event per POST", tp, o.plan.Start, total, nil, 0, len(recs), lastUpload)
	if err != nil {
		return err
	}
	rep.Results = append(rep.Results, r)
	rep.Notes = append(rep.Notes, fmt.Sprintf("Memory run: %d recordings registered from the first audit events, so that they wait at once; %q is the most that were registered and not finished at one time (from the daemon's metrics once its checkpoint passed the last upload).", len(recs), "recordings waiting"))
	return nil
}
