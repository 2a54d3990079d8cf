package daemon

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/fdfwd/teleport-event-handler/metrics"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/status"
)

// serveControl answers the status command on the control socket in the
// state's directory while the daemon runs (the state file is locked then).
// The socket is the daemon user's only (0600). A failure to listen is
// logged: status then says the socket does not answer.
func serveControl(store *persistence.Store, m *metrics.Metrics, log zerolog.Logger) (stop func()) {
	path := filepath.Join(store.Dir(), status.ControlSocket)
	_ = os.Remove(path) // a crashed run's socket: the state file's lock says the directory is ours
	addr, release, err := status.SocketAddr(store.Dir())
	var ln net.Listener
	if err == nil {
		ln, err = net.Listen("unix", addr)
		release()
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		// Closing would unlink addr, which may name the directory through
		// a descriptor closed (and reused) since: stop removes path.
		ul.SetUnlinkOnClose(false)
	}
	if err != nil {
		log.Warn().Err(err).Str("file", path).Msg("cannot serve the control socket; the status command will not reach this daemon")
		return func() {}
	}
	_ = os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		r, err := status.Collect(store, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		r.Running = true
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

// gaugeValue reads a gauge's current value.
func gaugeValue(g interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if g.Write(&m) != nil {
		return 0
	}
	return m.GetGauge().GetValue()
}
