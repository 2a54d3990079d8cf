package e2e

import (
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"

	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
)

func teleportGenerate(n int, start time.Time, seed int64) []apievents.AuditEvent {
	return teleportsrv.GenerateAuditEvents(n, start, time.Millisecond, seed+1000)
}
