package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// ControlSocket is the running daemon's control socket, in its per-cluster
// directory beside the state file: the state file is locked while the
// daemon runs, so the daemon answers for it.
const ControlSocket = "control.sock"

// Read returns the report of the state in dir: from the file when no daemon
// runs on it, else from the running daemon's control socket. It changes
// nothing.
func Read(ctx context.Context, dir string, now time.Time) (Report, error) {
	store, err := persistence.OpenReadOnly(dir, 200*time.Millisecond)
	switch {
	case err == nil:
		defer store.Close()
		return Collect(store, now)
	case errors.Is(err, persistence.ErrLocked):
		return query(ctx, dir)
	case errors.Is(err, fs.ErrNotExist):
		return Report{}, fmt.Errorf("no state in %s: no daemon has run with this --storage and --teleport-addr", dir)
	}
	return Report{}, err
}

// query asks the running daemon for its report.
func query(ctx context.Context, dir string) (Report, error) {
	path := filepath.Join(dir, ControlSocket)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://daemon/status", nil)
	if err != nil {
		return Report{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return Report{}, fmt.Errorf("the state file in %s is held by a running daemon, whose control socket %s does not answer (%w)", dir, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return Report{}, fmt.Errorf("the running daemon answered %s: %s", resp.Status, msg)
	}
	var r Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return Report{}, fmt.Errorf("the running daemon's report: %w", err)
	}
	return r, nil
}
