package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/status"
)

// The status command reaches a running daemon whatever the length of its
// state directory's path, though a Unix socket address holds 108 bytes.
func TestControlSocketAnswersInADeepDirectory(t *testing.T) {
	for name, dir := range map[string]string{
		"short": filepath.Join(t.TempDir(), "s"),
		"deep":  filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60)),
	} {
		t.Run(name, func(t *testing.T) {
			store, err := persistence.Open(dir)
			require.NoError(t, err)
			defer store.Close()
			stop := serveControl(store, metrics.New(), zerolog.Nop())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := status.Read(ctx, dir, time.Now())
			stop()
			require.NoError(t, err)
			require.True(t, r.Running)
			require.Equal(t, filepath.Join(dir, persistence.FileName), r.StateFile)
			_, err = os.Stat(filepath.Join(dir, status.ControlSocket))
			require.True(t, os.IsNotExist(err), "the socket is removed at the stop")
		})
	}
}
