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
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// ControlSocket is the running daemon's control socket, in its per-cluster
// directory beside the state file: the state file is locked while the
// daemon runs, so the daemon answers for it.
const ControlSocket = "control.sock"

// maxSocketPath is what a Unix socket address holds on Linux (108 bytes
// with the terminating zero).
const maxSocketPath = 107

// SocketAddr is the address to bind or dial dir's control socket at: its
// path, or, when that is too long for a socket address, the same file
// reached through an open descriptor of dir (/proc/self/fd/N/control.sock).
// release closes that descriptor once the socket is bound or connected.
func SocketAddr(dir string) (addr string, release func(), err error) {
	path := filepath.Join(dir, ControlSocket)
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", nil, fmt.Errorf("open %s for its control socket: %w", dir, err)
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), ControlSocket), func() { _ = d.Close() }, nil
}

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
		return Report{}, noState(dir)
	}
	return Report{}, err
}

// noState says that dir holds no state and, when the storage holds the
// state of other Teleport addresses, names them: --teleport-addr picks the
// directory and defaults to localhost:3025, so a status run without it
// usually looks in the wrong one.
func noState(dir string) error {
	msg := fmt.Sprintf("no state in %s: no daemon has run with this --storage and --teleport-addr", dir)
	if found := StateDirs(filepath.Dir(dir)); len(found) > 0 {
		msg += fmt.Sprintf("; %s holds the state of --teleport-addr %s: give one of them", filepath.Dir(dir), strings.Join(found, ", "))
	}
	return errors.New(msg)
}

// StateDirs lists the Teleport addresses whose state is under storage,
// this daemon's (state.db) or the original plugin's (start_time), as
// host:port: the directory names of persistence.Dir with the port's
// separator restored.
func StateDirs(storage string) []string {
	entries, err := os.ReadDir(storage)
	if err != nil {
		return nil
	}
	var addrs []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		for _, marker := range []string{persistence.FileName, "start_time"} {
			if _, err := os.Stat(filepath.Join(storage, e.Name(), marker)); err == nil {
				addrs = append(addrs, addrOf(e.Name()))
				break
			}
		}
	}
	return addrs
}

// addrOf turns a state directory's name back into host:port.
func addrOf(name string) string {
	if i := strings.LastIndex(name, "_"); i > 0 {
		return name[:i] + ":" + name[i+1:]
	}
	return name
}

// query asks the running daemon for its report.
func query(ctx context.Context, dir string) (Report, error) {
	path := filepath.Join(dir, ControlSocket)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			addr, release, err := SocketAddr(dir)
			if err != nil {
				return nil, err
			}
			defer release()
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
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
