package daemon

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/persistence"
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

// inotifyEvent is an event inotify reports in a directory, and the name
// of the entry it is about.
type inotifyEvent struct {
	name string
	mask uint32
}

// watch reports the creations, renames into and changes of mode in dir;
// events returns those that happened since the last call.
func watch(t *testing.T, dir string) (events func() []inotifyEvent) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	_, err = syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_ATTRIB)
	require.NoError(t, err)
	return func() []inotifyEvent {
		var out []inotifyEvent
		buf := make([]byte, 64<<10)
		n, err := syscall.Read(fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return nil
		}
		require.NoError(t, err)
		for off := 0; off < n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)], "\x00")
			out = append(out, inotifyEvent{name: string(name), mask: ev.Mask})
			off += syscall.SizeofInotifyEvent + int(ev.Len)
		}
		return out
	}
}

// The control socket is never at its path with the umask's mode, not even
// for a moment before a chmod: it appears there by a rename, already 0600,
// and its mode is not changed there (inotify reports every creation,
// rename and change of mode in the directory, in order). Nothing is left
// of the directory it was bound in.
func TestControlSocketIsPrivateFromTheStart(t *testing.T) {
	for name, dir := range map[string]string{
		"short": t.TempDir(),
		"deep":  filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60)),
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.MkdirAll(dir, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, status.ControlSocket), nil, 0o644)) // a crashed run's
			events := watch(t, dir)
			ln, err := listenPrivate(dir)
			require.NoError(t, err)
			defer ln.Close()
			path := filepath.Join(dir, status.ControlSocket)
			defer os.Remove(path)

			var at []uint32
			for _, ev := range events() {
				if ev.name == status.ControlSocket {
					at = append(at, ev.mask&^syscall.IN_ISDIR)
				}
			}
			require.Equal(t, []uint32{syscall.IN_MOVED_TO}, at, "renamed into place, never created nor chmod'ed there")
			info, err := os.Lstat(path)
			require.NoError(t, err)
			require.Equal(t, os.ModeSocket|0o600, info.Mode())
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "only the socket: %v", entries)
			conn, err := net.Dial("unix", mustAddr(t, dir))
			require.NoError(t, err, "the socket answers where it was renamed to")
			conn.Close()
		})
	}
}

func mustAddr(t *testing.T, dir string) string {
	t.Helper()
	addr, release, err := status.SocketAddr(dir)
	require.NoError(t, err)
	t.Cleanup(release)
	return addr
}
