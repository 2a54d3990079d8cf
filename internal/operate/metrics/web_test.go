package metrics_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/fdfwd/teleport-event-handler/internal/operate/metrics"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// With a web configuration /metrics takes TLS and basic auth as Prometheus
// exporters do; the probes' own address answers without either.
func TestWebConfigSecuresMetricsAndProbesStayReachable(t *testing.T) {
	pki := testpki.New(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	require.NoError(t, err)
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	require.NoError(t, os.WriteFile(webConfig, fmt.Appendf(nil, `tls_server_config:
  cert_file: %s
  key_file: %s
basic_auth_users:
  prometheus: %s
`, pki.FluentdServerCertFile, pki.FluentdServerKeyFile, hash), 0o600))

	m := metrics.New()
	addr, health := freeAddr(t), freeAddr(t)
	stop, err := m.Serve(addr, webConfig, zerolog.Nop())
	require.NoError(t, err)
	defer stop()
	stopHealth, err := m.ServeHealth(health, zerolog.Nop())
	require.NoError(t, err)
	defer stopHealth()

	roots := x509.NewCertPool()
	roots.AddCert(pki.FluentdCA.Cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	get := func(url, user, pass string) int {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, get("https://"+addr+"/metrics", "", ""))
	require.Equal(t, http.StatusUnauthorized, get("https://"+addr+"/metrics", "prometheus", "guess"))
	require.Equal(t, http.StatusOK, get("https://"+addr+"/metrics", "prometheus", "s3cret"))
	require.NotEqual(t, http.StatusOK, get("http://"+addr+"/metrics", "prometheus", "s3cret"), "no plain HTTP")
	require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, get("http://"+health+"/healthz", "", ""), "answered, without credentials")
	require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, get("http://"+health+"/readyz", "", ""))
	require.Equal(t, http.StatusNotFound, get("http://"+health+"/metrics", "", ""), "the probes' address serves no metrics")
}

// Headers over the limit are refused before anything is served.
func TestMetricsServerRefusesOversizedHeaders(t *testing.T) {
	m := metrics.New()
	addr := freeAddr(t)
	stop, err := m.Serve(addr, "", zerolog.Nop())
	require.NoError(t, err)
	defer stop()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("X-Big", strings.Repeat("a", 2*metrics.MaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}
