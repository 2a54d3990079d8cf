//go:build faults

package faults

import (
	"os"
	"strconv"
	"strings"
)

// A binary built with -tags faults arms the panics listed in TEH_FAULTS,
// e.g. TEH_FAULTS=player=2,poller=1. Release builds do not contain this.
func init() {
	for _, item := range strings.Split(os.Getenv("TEH_FAULTS"), ",") {
		kind, n, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			continue
		}
		if count, err := strconv.Atoi(n); err == nil && count > 0 {
			Arm(kind, count)
		}
	}
}
