package daemon

import (
	"context"
	"sync"
	"testing"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/internalutils/stream"
	"github.com/gravitational/trace"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
)

// probeAPI answers the export probe with the errors queued in answers, then
// with NotImplemented.
type probeAPI struct {
	API     // the rest is not used by the probe
	mu      sync.Mutex
	answers []error
	probes  int
}

func (p *probeAPI) GetEventExportChunks(context.Context, *auditlogpb.GetEventExportChunksRequest) stream.Stream[*auditlogpb.EventExportChunk] {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes++
	var err error = trace.NotImplemented("no export API")
	if len(p.answers) > 0 {
		err, p.answers = p.answers[0], p.answers[1:]
	}
	if err == nil {
		return stream.Empty[*auditlogpb.EventExportChunk]()
	}
	return stream.Fail[*auditlogpb.EventExportChunk](err)
}

func (p *probeAPI) ExportUnstructuredEvents(context.Context, *auditlogpb.ExportUnstructuredEventsRequest) stream.Stream[*auditlogpb.ExportEventUnstructured] {
	return stream.Empty[*auditlogpb.ExportEventUnstructured]()
}

func TestExportProbe(t *testing.T) {
	// The waits between probes are not what is tested here.
	was := probeRetries
	probeRetries = backoff.Policy{Initial: time.Millisecond}
	t.Cleanup(func() { probeRetries = was })
	unavailable := func() error { return trace.ConnectionProblem(nil, "unavailable") }
	for _, tc := range []struct {
		name    string
		mode    string
		answers []error
		export  bool
		err     string
		probes  int
	}{
		{name: "auto, waits out Teleport being unreachable, then search", mode: config.ExportAuto,
			answers: []error{unavailable(), unavailable()}, probes: 3},
		{name: "auto, export API", mode: config.ExportAuto, answers: []error{nil}, export: true, probes: 1},
		{name: "export, refused without the API", mode: config.ExportExport,
			answers: []error{unavailable()}, err: "--export-mode export: Teleport at teleport.test:3025 has no export API", probes: 2},
		{name: "export, gives up on other errors", mode: config.ExportExport,
			answers: []error{trace.AccessDenied("denied"), trace.AccessDenied("denied"), trace.AccessDenied("denied")},
			err:     "probe Teleport's export API at teleport.test:3025 (--export-mode export): denied", probes: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			api := &probeAPI{answers: tc.answers}
			ex, err := chooseExport(context.Background(), tc.mode, "teleport.test:3025", api, zerolog.Nop())
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tc.export, ex != nil)
			require.Equal(t, tc.probes, api.probes)
		})
	}
}
