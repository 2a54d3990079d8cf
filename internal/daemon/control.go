package daemon

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// serveControl answers the status command on the control socket in the
// state's directory while the daemon runs (the state file is locked then),
// from its start: a daemon still waiting for Teleport or Fluentd says so.
// The socket is the daemon user's only (0600, from the moment it is
// there). A failure to listen is logged: status then says the socket does
// not answer.
func serveControl(store *persistence.Store, m *metrics.Metrics, log zerolog.Logger) (stop func()) {
	path := filepath.Join(store.Dir(), status.ControlSocket)
	ln, err := listenPrivate(store.Dir())
	if err != nil {
		log.Warn().Err(err).Str("file", path).Msg("cannot serve the control socket; the status command will not reach this daemon")
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		r, err := status.Collect(store, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		r.Running = true
		if what, starting := m.Health.WaitingFor(); starting {
			r.Starting = cmp.Or(what, "starting")
		}
		for _, o := range m.Outputs() {
			r.Outputs = append(r.Outputs, status.Output{Stream: o.Stream, URL: o.URL, Protocol: o.Protocol})
		}
		active := int(gaugeValue(m.SessionsActive))
		r.Recordings.Active = &active
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: metrics.MaxHeaderBytes}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn().Err(err).Str("file", path).Msg("control socket failed")
		}
	}()
	return func() {
		_ = srv.Close()
		<-done
		_ = os.Remove(path)
	}
}

// privatePattern names the directories the control socket is bound in.
const privatePattern = ".control-*"

// listenPrivate binds the control socket in dir so that it is never there
// with a mode wider than 0600: a socket takes the umask's mode at bind, so
// it is bound in a directory of its own, made 0700 (nobody else can reach a
// socket inside it, whatever its mode), made 0600 there, then renamed into
// place, atomically, over a crashed run's socket (the state file's lock says
// the directory is ours). Setting the umask around the bind instead would
// change it for the whole process, racing the files the other goroutines
// create.
func listenPrivate(dir string) (net.Listener, error) {
	leftovers, _ := filepath.Glob(filepath.Join(dir, privatePattern))
	for _, l := range leftovers {
		_ = os.RemoveAll(l) // a run that crashed while binding
	}
	private, err := os.MkdirTemp(dir, privatePattern) // 0700
	if err != nil {
		return nil, fmt.Errorf("make a private directory to bind the control socket in: %w", err)
	}
	defer os.RemoveAll(private) // empty once the socket is renamed out
	addr, release, err := status.SocketAddr(private)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", addr)
	release()
	if err != nil {
		return nil, err
	}
	// Closing would unlink addr, which is no longer where the socket is
	// (and may name a descriptor closed and reused since): stop removes it.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	bound := filepath.Join(private, status.ControlSocket)
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(bound, filepath.Join(dir, status.ControlSocket)); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// gaugeValue reads a gauge's current value.
func gaugeValue(g interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if g.Write(&m) != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}
