package status

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/storetest"
)

// status without --teleport-addr looks in localhost_3025; when that is not
// where the state is, the error names the addresses whose state is there,
// the daemon's and the original plugin's.
func TestNoStateNamesTheStateDirectoriesFound(t *testing.T) {
	storage := t.TempDir()
	_, err := Read(context.Background(), persistence.Dir(storage, "localhost:3025"), time.Now())
	require.EqualError(t, err, "no state in "+filepath.Join(storage, "localhost_3025")+
		": no daemon has run with this --storage and --teleport-addr")

	storetest.Seed(t, persistence.Dir(storage, "teleport.example.com:443"))
	original := persistence.Dir(storage, "10.0.0.7:3025")
	require.NoError(t, os.MkdirAll(original, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(original, "start_time"), []byte("2024-01-01T00:00:00Z"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(storage, "not-a-state"), 0o700))

	_, err = Read(context.Background(), persistence.Dir(storage, "localhost:3025"), time.Now())
	require.ErrorContains(t, err, "no daemon has run with this --storage and --teleport-addr; "+storage+
		" holds the state of --teleport-addr 10.0.0.7:3025, teleport.example.com:443: give one of them")
}
