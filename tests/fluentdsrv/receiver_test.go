package fluentdsrv

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdfwd/teleport-event-handler/tests/await"
	"github.com/fdfwd/teleport-event-handler/tests/leaktest"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

type fixture struct {
	pki *testpki.Bundle
	r   *Receiver
	clt *http.Client
}

func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	pki := testpki.New(t)
	cfg.TLS = pki.ServerTLS(pki.FluentdServer, pki.FluentdCA)
	r, err := Start(cfg)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	f := &fixture{pki: pki, r: r}
	f.clt = f.client(t, true)
	return f
}

// client is an HTTPS client trusting the Fluentd CA, with the Fluentd client
// certificate if withCert.
func (f *fixture) client(t *testing.T, withCert bool) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(f.pki.FluentdCA.Cert)
	cfg := &tls.Config{RootCAs: roots}
	if withCert {
		cert, err := tls.X509KeyPair(f.pki.FluentdClient.CertPEM, f.pki.FluentdClient.KeyPEM)
		require.NoError(t, err)
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type answer struct {
	status int
	body   string
	resp   *http.Response
}

func (f *fixture) post(t *testing.T, path, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.r.URL()+path, bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.clt.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, body: string(b), resp: resp}
}

func TestClientCertificateIsRequired(t *testing.T) {
	f := start(t, Config{})
	_, err := f.client(t, false).Post(f.r.URL()+"/test.log", "application/json", bytes.NewBufferString(`{"a":1}`))
	require.Error(t, err)
	require.Contains(t, err.Error(), "tls")
	require.Zero(t, f.r.Requests())

	// A certificate of another CA is refused too.
	other := testpki.New(t)
	roots := x509.NewCertPool()
	roots.AddCert(f.pki.FluentdCA.Cert)
	cert, err := tls.X509KeyPair(other.FluentdClient.CertPEM, other.FluentdClient.KeyPEM)
	require.NoError(t, err)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}
	defer tr.CloseIdleConnections()
	_, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Post(f.r.URL()+"/test.log", "application/json", bytes.NewBufferString(`{"a":1}`))
	require.Error(t, err)
	require.Zero(t, f.r.Requests())
}

func TestLikeFluentdInHTTP(t *testing.T) {
	f := start(t, Config{})
	a := f.post(t, "/test.log", `{"uid":"u1","event":"user.login"}`)
	require.Equal(t, http.StatusOK, a.status)
	require.Empty(t, a.body)
	require.Equal(t, "HTTP/1.1", a.resp.Proto)
	require.Equal(t, uint16(tls.VersionTLS12), a.resp.TLS.Version, "Fluentd's default")

	a = f.post(t, "/test.log", `[{"uid":"u2"},{"uid":"u3"}]`)
	require.Equal(t, http.StatusOK, a.status)
	a = f.post(t, "/session.abc.log", `[{"event":"print","ei":1},{"event":"print","ei":2},{"uid":"u4","ei":3}]`)
	require.Equal(t, http.StatusOK, a.status)
	a = f.post(t, "/a/b", `{"x":1}`)
	require.Equal(t, http.StatusOK, a.status)
	a = f.post(t, "/test.log", `[]`)
	require.Equal(t, http.StatusOK, a.status)

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`[{"uid":"u5"},{"uid":"u6"}]`))
	require.NoError(t, zw.Close())
	a = f.post(t, "/test.log", gz.String(), "Content-Encoding", "gzip")
	require.Equal(t, http.StatusOK, a.status)

	require.Equal(t, []string{"test.log", "session.abc.log", "a.b"}, f.r.Tags())
	require.Equal(t, 9, f.r.Count())
	recs := f.r.Records("test.log")
	require.Len(t, recs, 5)
	require.JSONEq(t, `{"uid":"u1","event":"user.login"}`, string(recs[0]))
	require.JSONEq(t, `{"uid":"u6"}`, string(recs[4]))
	require.Len(t, f.r.Records("session.abc.log"), 3)
	require.Empty(t, f.r.Records("nothing"))
	require.Equal(t, map[string]int{
		"u1": 1, "u2": 1, "u3": 1, "u4": 1, "u5": 1, "u6": 1,
		"session.abc.log/1": 1, "session.abc.log/2": 1, "a.b/": 1,
	}, f.r.CountByUID())
	require.Equal(t, 6, f.r.Requests())

	// Refusals store nothing.
	for _, c := range []struct{ body, want string }{
		{`{"uid":`, "invalid JSON"},
		{"{\"uid\":\"n1\"}\n{\"uid\":\"n2\"}\n", "after the first value"}, // NDJSON
		{`"a string"`, "neither"},
		{`[{"uid":"n3"}, 5]`, "not a JSON object"},
		{``, "invalid JSON"},
	} {
		a = f.post(t, "/test.log", c.body)
		require.Equal(t, http.StatusBadRequest, a.status, c.body)
		require.Contains(t, a.body, "400 Bad Request\n")
		require.Contains(t, a.body, c.want)
		require.Equal(t, "text/plain", a.resp.Header.Get("Content-Type"))
	}
	resp, err := f.clt.Get(f.r.URL() + "/test.log")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	a = f.post(t, "/", `{"a":1}`)
	require.Equal(t, http.StatusBadRequest, a.status, "no tag")
	require.Equal(t, 9, f.r.Count())
	require.Equal(t, map[int]int{200: 6, 400: 6, 405: 1}, f.r.Statuses())
}

func TestTooLargeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("posts 32 MiB")
	}
	f := start(t, Config{})
	big := `{"data":"` + string(bytes.Repeat([]byte("x"), maxBody)) + `"}`
	req, err := http.NewRequest(http.MethodPost, f.r.URL()+"/test.log", bytes.NewBufferString(big))
	require.NoError(t, err)
	resp, err := f.clt.Do(req)
	if err == nil { // the server may close before the client has sent everything
		resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	}
	require.Zero(t, f.r.Count())
}

func TestFailFirstAndRandomFailures(t *testing.T) {
	f := start(t, Config{})
	f.r.FailFirst(2, http.StatusServiceUnavailable)
	for range 2 {
		a := f.post(t, "/test.log", `{"uid":"a"}`)
		require.Equal(t, http.StatusServiceUnavailable, a.status)
		require.Contains(t, a.body, "503 Service Unavailable")
	}
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", `{"uid":"a"}`).status)
	require.Equal(t, map[string]int{"a": 1}, f.r.CountByUID())

	draws := func() []int {
		f.r.SetRandomFailure(0.5, http.StatusInternalServerError, 7)
		var out []int
		for range 40 {
			out = append(out, f.post(t, "/r", `{"uid":"r"}`).status)
		}
		return out
	}
	first := draws()
	failed := 0
	for _, s := range first {
		if s == http.StatusInternalServerError {
			failed++
		}
	}
	require.Greater(t, failed, 5)
	require.Less(t, failed, 35)
	require.Equal(t, first, draws(), "a seed repeats the draws")
	require.Equal(t, 2*(40-failed), f.r.CountByUID()["r"])
	f.r.SetRandomFailure(0, 0, 0)
	require.Equal(t, http.StatusOK, f.post(t, "/r", `{"uid":"r"}`).status)
}

func TestLatency(t *testing.T) {
	f := start(t, Config{})
	f.r.SetLatency(200 * time.Millisecond)
	began := time.Now()
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", `{"uid":"a"}`).status)
	require.GreaterOrEqual(t, time.Since(began), 200*time.Millisecond)
	f.r.SetLatency(0)
	began = time.Now()
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", `{"uid":"b"}`).status)
	require.Less(t, time.Since(began), 200*time.Millisecond)

	// Close does not wait out a long delay.
	f.r.SetLatency(time.Hour)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = f.clt.Post(f.r.URL()+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"c"}`))
	}()
	require.Eventually(t, func() bool { return f.r.Requests() == 3 }, 5*time.Second, 5*time.Millisecond)
	await.Returns(t, 5*time.Second, "Close waits for an injected delay", f.r.Close)
	wg.Wait()
}

func TestRejectWhere(t *testing.T) {
	f := start(t, Config{})
	f.r.RejectWhere(http.StatusBadRequest, func(r map[string]any) bool { return r["uid"] == "bad" })
	a := f.post(t, "/test.log", `[{"uid":"ok1"},{"uid":"bad","event":"exec"},{"uid":"ok2"}]`)
	require.Equal(t, http.StatusBadRequest, a.status)
	require.Contains(t, a.body, "record 1 rejected")
	require.Contains(t, a.body, "uid=bad")
	require.Zero(t, f.r.Count(), "nothing of a rejected request is stored")
	// Permanent.
	require.Equal(t, http.StatusBadRequest, f.post(t, "/test.log", `{"uid":"bad"}`).status)
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", `[{"uid":"ok1"},{"uid":"ok2"}]`).status)
	require.Equal(t, map[string]int{"ok1": 1, "ok2": 1}, f.r.CountByUID())

	f.r.RejectWhere(http.StatusUnprocessableEntity, func(r map[string]any) bool { return r["event"] == "print" })
	require.Equal(t, http.StatusUnprocessableEntity, f.post(t, "/session.x.log", `{"event":"print","ei":0}`).status)
}

func TestDownAndUpKeepThePort(t *testing.T) {
	f := start(t, Config{})
	url := f.r.URL()
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", `{"uid":"1"}`).status) // leaves a keep-alive connection

	f.r.Down(0)
	// The keep-alive connection was closed: a client that has not noticed
	// yet reads EOF on it; a new connection is refused.
	_, err := f.clt.Post(url+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"2"}`))
	require.Error(t, err)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		_, err = f.clt.Post(url+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"2"}`))
		require.True(t, errors.Is(err, syscall.ECONNREFUSED), "%v", err)
	}
	f.r.Down(0) // idempotent
	f.r.Up()
	require.NoError(t, f.r.Err())
	require.Equal(t, url, f.r.URL())
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", `{"uid":"3"}`).status)
	f.r.Up() // idempotent

	f.r.Down(300 * time.Millisecond)
	_, err = f.clt.Post(url+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"4"}`))
	require.Error(t, err)
	require.Eventually(t, func() bool {
		resp, err := f.clt.Post(url+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"5"}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, map[string]int{"1": 1, "3": 1, "5": 1}, f.r.CountByUID())

	// Down for long, then closed: the pending Up never runs.
	f.r.Down(time.Hour)
	f.r.Close()
}

func TestDownLetsARequestInProgressFinish(t *testing.T) {
	f := start(t, Config{})
	f.r.SetLatency(300 * time.Millisecond)
	done := make(chan int, 1)
	go func() {
		resp, err := f.clt.Post(f.r.URL()+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"x"}`))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	require.Eventually(t, func() bool { return f.r.Requests() == 1 }, 5*time.Second, 5*time.Millisecond)
	f.r.Down(0)
	require.Equal(t, http.StatusOK, <-done, "acknowledged, so stored")
	require.Equal(t, 1, f.r.Count())
}

func TestCutRequestsAreNotStored(t *testing.T) {
	f := start(t, Config{})
	f.r.SetLatency(time.Hour)

	// The client gives up.
	impatient := f.client(t, true)
	impatient.Timeout = 100 * time.Millisecond
	_, err := impatient.Post(f.r.URL()+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"gone"}`))
	require.Error(t, err)

	// An outage cuts a request that takes too long to finish.
	done := make(chan error, 1)
	go func() {
		resp, err := f.clt.Post(f.r.URL()+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"cut"}`))
		if err == nil {
			resp.Body.Close()
			err = errors.New(resp.Status)
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return f.r.Requests() == 2 }, 5*time.Second, 5*time.Millisecond)
	f.r.Down(0)
	require.Error(t, <-done, "no answer, not even an implicit 200")
	require.Zero(t, f.r.Count())
	require.Empty(t, f.r.Statuses())
}

func TestDirFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "received")
	f := start(t, Config{Dir: dir})
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", "[\n {\"uid\": \"a\",\n  \"n\": 1},\n {\"uid\": \"b\"}\n]").status)
	require.Equal(t, http.StatusOK, f.post(t, "/session.s1.log", `{"event":"print","ei":0}`).status)
	f.r.FailFirst(1, 500)
	require.Equal(t, 500, f.post(t, "/test.log", `{"uid":"c"}`).status)
	require.Equal(t, http.StatusOK, f.post(t, "/test.log", `{"uid":"d"}`).status)
	f.r.Close()

	lines := func(name string) []string {
		fh, err := os.Open(filepath.Join(dir, name))
		require.NoError(t, err)
		defer fh.Close()
		var out []string
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			require.True(t, json.Valid(sc.Bytes()))
			out = append(out, sc.Text())
		}
		return out
	}
	require.Equal(t, []string{`{"uid":"a","n":1}`, `{"uid":"b"}`, `{"uid":"d"}`}, lines("test.log.jsonl"))
	require.Equal(t, []string{`{"event":"print","ei":0}`}, lines("session.s1.log.jsonl"))
}

func TestConcurrentClients(t *testing.T) {
	f := start(t, Config{})
	f.r.SetRandomFailure(0.2, 503, 1)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				for {
					body, _ := json.Marshal(map[string]any{"uid": w*1000 + i})
					resp, err := f.clt.Post(f.r.URL()+"/test.log", "application/json", bytes.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 400, f.r.Count())
	require.Len(t, f.r.CountByUID(), 400)
}

// Restart serves new connections with the new certificates and closes the
// ones open, as restarting Fluentd does: a client of the old CA keeps
// working only until then.
func TestRestartServesTheNewCertificates(t *testing.T) {
	f := start(t, Config{})
	require.Equal(t, 200, f.post(t, "/test.log", `{"uid":"a"}`).status)
	renewed := testpki.New(t)
	f.r.Restart(renewed.ServerTLS(renewed.FluentdServer, renewed.FluentdCA))
	_, err := f.clt.Post(f.r.URL()+"/test.log", "application/json", bytes.NewBufferString(`{"uid":"b"}`))
	require.Error(t, err, "the old CA's client, on a new connection")
	f.pki = renewed
	f.clt = f.client(t, true)
	require.Equal(t, 200, f.post(t, "/test.log", `{"uid":"c"}`).status)
	require.Equal(t, 2, f.r.Count())
}
