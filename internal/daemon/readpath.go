package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/trace"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fdfwd/teleport-event-handler/actors/export"
	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/backoff"
	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/persistence/kv"
)

// chooseReadPath decides how the audit log is read: with the export API
// (the Exporter returned) or with search (nil). Search after the export path
// ran starts at the day the export was walking, not from its own older
// position.
func chooseReadPath(ctx context.Context, cfg *config.Config, api API, store *persistence.Store, log zerolog.Logger) (export.Exporter, error) {
	exporter, err := chooseExport(ctx, cfg.ExportMode, cfg.Teleport.Addr, api, log)
	if err != nil && ctx.Err() != nil {
		return nil, errStopped
	}
	if err != nil || exporter != nil {
		return exporter, err
	}
	seed, ok, err := export.SearchSeed(store)
	if err != nil || !ok {
		return nil, err
	}
	if err := store.Apply([]kv.Write{persistence.AuditPositionWrite(seed)}); err != nil {
		return nil, err
	}
	log.Info().Time("window_start", seed.WindowStart).Msg("search resumes at the day the export path was reading")
	return nil, nil
}

// probeRetries is the wait between probes of the export API.
var probeRetries = backoff.Policy{Initial: time.Second, Max: 30 * time.Second}

// chooseExport decides between the export API and search: --export-mode
// search forces search without asking; auto probes the export API and falls
// back to search when Teleport answers NotImplemented (an older server);
// export probes too, so that a server without the API is refused at start
// rather than retried for ever. A probe that fails because Teleport is
// unreachable or busy is repeated until it answers; other failures end the
// start after three tries. Nil means search.
func chooseExport(ctx context.Context, mode, addr string, api API, log zerolog.Logger) (export.Exporter, error) {
	if mode == config.ExportSearch {
		log.Info().Msg("reading the audit log with search (--export-mode search)")
		return nil, nil
	}
	ex, ok := api.(export.Exporter)
	if !ok {
		if mode == config.ExportExport {
			return nil, errors.New("--export-mode export: this Teleport client has no export API; use --export-mode search or auto")
		}
		return nil, nil
	}
	hard := 0 // failures other than Teleport being unreachable or busy
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(probeRetries.Delay(attempt)):
			}
		}
		err := probeExport(ctx, ex)
		switch {
		case err == nil:
			log.Info().Str("export_mode", mode).Msg("reading the audit log with the export API")
			return ex, nil
		case trace.IsNotImplemented(err):
			if mode == config.ExportExport {
				return nil, fmt.Errorf("--export-mode export: Teleport at %s has no export API (it answered NotImplemented to GetEventExportChunks; Teleport 15.4+ has it); use --export-mode auto or search", addr)
			}
			log.Info().Msg("Teleport has no export API; reading the audit log with search")
			return nil, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case teleport.Transient(err):
			// Teleport answers Ping but not this yet (restarting, busy):
			// wait for it as for any other call.
			log.Warn().Err(err).Int("failures", attempt+1).Msg("probing Teleport's export API failed; retrying")
			continue
		}
		if hard++; hard == 3 {
			return nil, fmt.Errorf("probe Teleport's export API at %s (--export-mode %s): %w; use --export-mode search to read with search without the probe", addr, mode, err)
		}
	}
}

// probeExport lists today's export chunks.
func probeExport(ctx context.Context, ex export.Exporter) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st := ex.GetEventExportChunks(pctx, &auditlogpb.GetEventExportChunksRequest{Date: timestamppb.New(time.Now().UTC())})
	for st.Next() {
	}
	if err := st.Done(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
