package main

import (
	"fmt"
)

// lockRun measures the lock policy's cost: one event per POST with
// --lock-enabled, over the backlog's burst of failed logins, against the
// receiver's capacity with one event per POST.
func lockRun(o *options, rep *report, tp *child, total int, capacity float64) error {
	if !o.runs["lock"] {
		return nil
	}
	name := fmt.Sprintf("daemon, 1 event per POST, --lock-enabled (%d failed logins of %d users)", o.plan.FailedLogins, LoginUsers)
	if err := addDaemonRun(o, rep, tp, "https", name, total, []string{"--lock-enabled", "--lock-period", "1000h"}, singleBaseline, capacity); err != nil {
		return err
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("The backlog holds a brute-force burst in its middle: %d failed logins of %d users within a minute. The lock run counts them (--lock-period 1000h, as the backlog is days old) and locks each user once; the run before it forwards them without the lock policy.", o.plan.FailedLogins, LoginUsers))
	return nil
}
