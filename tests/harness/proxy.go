package harness

import (
	"encoding/json"
	"strings"
	"testing"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// Proxy is a toxiproxy TCP proxy on 127.0.0.1 in front of upstream, for
// network faults: toxics (latency, resets, timeouts, bandwidth) and
// outages (Down, Up).
type Proxy struct {
	p *toxiproxy.Proxy
}

// NewProxy starts a proxy to upstream, stopped with the test.
func NewProxy(t *testing.T, name, upstream string) *Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	require.NoError(t, p.Start())
	t.Cleanup(p.Stop)
	return &Proxy{p: p}
}

// Addr is where the proxy listens.
func (p *Proxy) Addr() string { return p.p.Listen }

// Toxic adds a toxic of type typ on stream ("upstream" or "downstream");
// attrs are its attributes.
func (p *Proxy) Toxic(t *testing.T, name, typ, stream string, attrs map[string]any) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "toxicity": 1.0, "attributes": attrs})
	require.NoError(t, err)
	_, err = p.p.Toxics.AddToxicJson(strings.NewReader(string(raw)))
	require.NoError(t, err)
}

// Remove removes the toxic called name.
func (p *Proxy) Remove(t *testing.T, name string) {
	t.Helper()
	require.NoError(t, p.p.Toxics.RemoveToxic(t.Context(), name))
}

// Down closes the listener and every connection through the proxy: clients
// get "connection refused" until Up.
func (p *Proxy) Down() { p.p.Stop() }

// Up listens again on the same address.
func (p *Proxy) Up(t *testing.T) {
	t.Helper()
	require.NoError(t, p.p.Start())
}
