package wire_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
)

func TestClassify(t *testing.T) {
	for status, want := range map[int]wire.Class{
		200: wire.Success, 201: wire.Success, 204: wire.Success,
		408: wire.Retry, 429: wire.Retry, 500: wire.Retry, 502: wire.Retry, 503: wire.Retry,
		400: wire.Permanent, 409: wire.Permanent, 413: wire.Permanent, 422: wire.Permanent,
		// About the receiver, not the event: never a dead letter.
		401: wire.Refused, 403: wire.Refused, 404: wire.Refused, 405: wire.Refused, 407: wire.Refused, 415: wire.Refused, 421: wire.Refused,
		300: wire.Refused, 301: wire.Refused, 302: wire.Refused, 303: wire.Refused, 304: wire.Refused, 307: wire.Refused, 308: wire.Refused,
		100: wire.Refused,
	} {
		require.Equal(t, want, wire.Classify(status), "status %d", status)
	}
}
