package pool

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/fluentd"
)

// Over forward an answer has no status: an ack is not "no answer".
func TestResponseClass(t *testing.T) {
	for want, res := range map[string]fluentd.Result{
		"2xx":     {Class: fluentd.Success, Status: 200},
		"4xx":     {Class: fluentd.Permanent, Status: 400},
		"ack":     {Class: fluentd.Success},
		"refused": {Class: fluentd.Refused},
		"error":   {Class: fluentd.Retry},
	} {
		require.Equal(t, want, responseClass(res))
	}
}
