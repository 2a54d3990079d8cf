package pool

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

// Over forward an answer has no status: an ack is not "no answer".
func TestResponseClass(t *testing.T) {
	for want, res := range map[string]wire.Result{
		"2xx":     {Class: wire.Success, Status: 200},
		"4xx":     {Class: wire.Permanent, Status: 400},
		"ack":     {Class: wire.Success},
		"refused": {Class: wire.Refused},
		"error":   {Class: wire.Retry},
	} {
		require.Equal(t, want, responseClass(res))
	}
}
