// Package fluentdsrv is a Fluentd-compatible HTTPS receiver for tests: it
// answers like Fluentd's in_http input (v1.18) with a JSON parser, keeps
// what it accepted for test oracles, and injects faults on demand.
package fluentdsrv

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody is in_http's default body_size_limit (32 MiB).
const maxBody = 32 << 20

// Config configures Start.
type Config struct {
	// TLS is the server configuration, as from testpki's ServerTLS
	// (requiring and verifying client certificates, as Fluentd with
	// client_cert_auth). When MaxVersion is 0 it is set to TLS 1.2, Fluentd's
	// default; set it to tls.VersionTLS13 to test TLS 1.3.
	TLS *tls.Config
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// Dir, if set, receives each accepted record as one JSON line appended to
	// Dir/<tag>.jsonl.
	Dir string
	// SharedKey, if set, is the forward listener's <security> shared_key:
	// clients must pass the HELO/PING/PONG handshake.
	SharedKey []byte
}

// Receiver is a running Fluentd-compatible receiver.
type Receiver struct {
	cfg Config
	// tls serves every connection with tlsNow, which Restart replaces.
	tls       *tls.Config
	tlsNow    atomic.Pointer[tls.Config]
	addr      string        // fixed after Start: Down and Up keep the port
	quit      chan struct{} // closed by Close: ends injected delays and Up's retries
	closeOnce sync.Once

	// srvMu serialises Down, Up and Close.
	srvMu    sync.Mutex
	srv      *http.Server
	served   chan struct{}   // closed when srv's Serve returned
	conns    *sync.WaitGroup // srv's connections, each with its handler
	abort    chan struct{}   // closed to end srv's injected delays at once
	upTimer  *time.Timer
	closed   bool
	upFailed error

	mu       sync.Mutex
	records  []record
	byTag    map[string][]int // tag -> indexes into records
	tags     []string         // in order of first record
	requests int
	files    map[string]*os.File
	// inFlight is the number of requests being handled now, peak the most
	// there ever were at once.
	inFlight, peak int

	// faults, guarded by mu
	failFirst  int
	failStatus int
	randP      float64
	randStatus int
	rng        *rand.Rand
	latency    time.Duration
	bodyLimit  int64 // in_http's body_size_limit; maxBody when 0
	rejects    []reject
	statuses   map[int]int // status -> requests answered with it

	// The forward listener (forward.go): its faults, modes seen and a
	// protocol error, guarded by mu; its connections and goroutines.
	fwdAddr   string
	fwdLn     net.Listener
	fwdFaults ForwardFaults
	fwdModes  map[string]int
	fwdErr    error
	fwdConns  map[net.Conn]struct{}
	fwdWG     sync.WaitGroup
	// fwdHandshakes counts the shared-key handshakes passed, guarded by mu.
	fwdHandshakes int
	// fwdDropped counts the forward messages dropped unanswered.
	fwdDropped int
	// fwdBuffer holds the messages acked and not yet stored, fwdPending
	// counts them (guarded by mu), fwdStored is signalled when none is
	// left; fwdStoreDone is closed when storeForward returns.
	fwdBuffer    chan *forwardMsg
	fwdPending   int
	fwdStored    *sync.Cond
	fwdStoreDone chan struct{}
}

type record struct {
	tag string
	raw json.RawMessage
	key string    // uid, or tag/ei for session events without one
	at  time.Time // the forward protocol's time; zero over HTTP
}

type reject struct {
	status int
	match  func(map[string]any) bool
}

// Start listens and serves until Close.
func Start(cfg Config) (*Receiver, error) {
	if cfg.TLS == nil {
		return nil, errors.New("fluentdsrv: Config.TLS is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("fluentdsrv: %w", err)
		}
	}
	r := &Receiver{
		cfg:      cfg,
		quit:     make(chan struct{}),
		byTag:    map[string][]int{},
		files:    map[string]*os.File{},
		statuses: map[int]int{},
		fwdModes: map[string]int{},
		fwdConns: map[net.Conn]struct{}{},
	}
	r.tlsNow.Store(serverTLS(cfg.TLS))
	r.tls = &tls.Config{GetConfigForClient: r.configForClient}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("fluentdsrv: listen on %s: %w", cfg.Addr, err)
	}
	r.addr = ln.Addr().String()
	if err := r.serveForward(); err != nil {
		ln.Close()
		return nil, err
	}
	r.serve(ln)
	return r, nil
}

// serverTLS is cfg as Fluentd would serve it.
func serverTLS(cfg *tls.Config) *tls.Config {
	tc := cfg.Clone()
	if tc.MaxVersion == 0 {
		tc.MaxVersion = tls.VersionTLS12
	}
	// Fluentd speaks HTTP/1.1 only.
	tc.NextProtos = []string{"http/1.1"}
	return tc
}

// configForClient serves a connection with the configuration of the
// moment, whose own GetConfigForClient (a test counting handshakes, one
// choosing a certificate) is called as crypto/tls would.
func (r *Receiver) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	cfg := r.tlsNow.Load()
	if cfg.GetConfigForClient != nil {
		if c, err := cfg.GetConfigForClient(hello); err != nil || c != nil {
			if c != nil {
				c = serverTLS(c)
			}
			return c, err
		}
	}
	return cfg, nil
}

// Restart is Fluentd restarted with renewed certificates (it reads them
// when it starts only): requests in progress are answered, then every
// connection, HTTP and forward, is closed, and new ones are served with
// cfg on the same ports.
func (r *Receiver) Restart(cfg *tls.Config) {
	r.tlsNow.Store(serverTLS(cfg))
	r.srvMu.Lock()
	if !r.closed && r.srv != nil {
		r.stop(true)
		r.srvMu.Unlock()
		r.Up()
	} else {
		r.srvMu.Unlock()
	}
	r.mu.Lock()
	for c := range r.fwdConns {
		c.Close()
	}
	r.mu.Unlock()
}

// serve starts an http.Server on ln; srvMu must be held or r not yet shared.
func (r *Receiver) serve(ln net.Listener) {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	// http.Server.Close does not wait for handlers; counting connections
	// does, since a handler runs on its connection's goroutine. Serve makes
	// every StateNew call before it returns, so all Adds precede the Wait in
	// stop.
	conns := new(sync.WaitGroup)
	abort := make(chan struct{})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.handle(w, req, abort)
		}),
		Protocols:         &protocols,
		IdleTimeout:       10 * time.Second, // Fluentd closes idle connections after 10s
		ReadHeaderTimeout: 10 * time.Second,
		// Handshakes refused for want of a client certificate are expected.
		ErrorLog: log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(tls.NewListener(ln, r.tls)) // ends with Shutdown or Close
	}()
	r.srv, r.served, r.conns, r.abort = srv, served, conns, abort
}

// URL is the receiver's base URL, "https://127.0.0.1:PORT"; append the tag
// path ("/test.log").
func (r *Receiver) URL() string { return "https://" + r.addr }

// Close stops the receiver: connections are closed and every goroutine of
// the receiver has ended when it returns.
func (r *Receiver) Close() {
	r.closeOnce.Do(func() { close(r.quit) })
	r.srvMu.Lock()
	defer r.srvMu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	if r.upTimer != nil {
		r.upTimer.Stop()
		r.upTimer = nil
	}
	r.stop(false)
	r.stopForward()
	r.mu.Lock()
	defer r.mu.Unlock()
	for tag, f := range r.files {
		f.Close()
		delete(r.files, tag)
	}
}

// stop ends the current server; srvMu must be held. A graceful stop lets
// requests in progress finish and answer (like stopping Fluentd), so that
// an outage does not itself cause a duplicate.
func (r *Receiver) stop(graceful bool) {
	if r.srv == nil {
		return
	}
	stopped := false
	if graceful {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		stopped = r.srv.Shutdown(ctx) == nil
		cancel()
	}
	if !stopped {
		close(r.abort)
		r.srv.Close()
	}
	<-r.served
	r.conns.Wait()
	r.srv, r.served, r.conns, r.abort = nil, nil, nil, nil
}

// Down simulates an outage: the listener and every connection close, so
// clients get "connection refused", until Up or, if d > 0, until d has
// passed. The receiver comes back on the same port.
func (r *Receiver) Down(d time.Duration) {
	r.srvMu.Lock()
	defer r.srvMu.Unlock()
	if r.closed {
		return
	}
	r.stop(true)
	if r.upTimer != nil {
		r.upTimer.Stop()
		r.upTimer = nil
	}
	if d > 0 {
		r.upTimer = time.AfterFunc(d, r.Up)
	}
}

// Up ends an outage. The port is taken again, retrying for up to 5 seconds
// should another socket hold it in between; Err reports a failure.
func (r *Receiver) Up() {
	r.srvMu.Lock()
	defer r.srvMu.Unlock()
	if r.closed || r.srv != nil {
		return
	}
	if r.upTimer != nil {
		r.upTimer.Stop()
		r.upTimer = nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", r.addr)
		if err == nil {
			r.upFailed = nil
			r.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			r.upFailed = fmt.Errorf("fluentdsrv: listen again on %s: %w", r.addr, err)
			return
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-r.quit:
			return
		}
	}
}

// Err reports why the last Up could not listen again, if it failed.
func (r *Receiver) Err() error {
	r.srvMu.Lock()
	defer r.srvMu.Unlock()
	r.lockStored()
	defer r.mu.Unlock()
	return errors.Join(r.upFailed, r.fwdErr)
}

// Records are the accepted records of tag, in arrival order.
func (r *Receiver) Records(tag string) []json.RawMessage {
	r.lockStored()
	defer r.mu.Unlock()
	idx := r.byTag[tag]
	out := make([]json.RawMessage, len(idx))
	for i, k := range idx {
		out[i] = bytes.Clone(r.records[k].raw)
	}
	return out
}

// Tags are the tags that have accepted records, in order of their first.
func (r *Receiver) Tags() []string {
	r.lockStored()
	defer r.mu.Unlock()
	return append([]string(nil), r.tags...)
}

// Count is the number of accepted records of all tags.
func (r *Receiver) Count() int {
	r.lockStored()
	defer r.mu.Unlock()
	return len(r.records)
}

// CountTag is the number of accepted records of tag.
func (r *Receiver) CountTag(tag string) int {
	r.lockStored()
	defer r.mu.Unlock()
	return len(r.byTag[tag])
}

// CountByUID counts accepted records by their "uid" field (the Teleport
// event ID), for exactly-once checks. Records without a uid (session print
// events) are keyed by tag + "/" + their "ei" (event index).
func (r *Receiver) CountByUID() map[string]int {
	r.lockStored()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.records))
	for _, rec := range r.records {
		out[rec.key]++
	}
	return out
}

// Requests is the number of HTTP requests received, answered with any
// status.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Statuses counts the requests answered with each HTTP status.
func (r *Receiver) Statuses() map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]int, len(r.statuses))
	for k, v := range r.statuses {
		out[k] = v
	}
	return out
}

// PeakConcurrency is the most requests the receiver handled at once.
func (r *Receiver) PeakConcurrency() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peak
}

// FailFirst answers the next n requests with status, storing nothing.
func (r *Receiver) FailFirst(n int, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failFirst, r.failStatus = n, status
}

// SetRandomFailure answers each request with status with probability p,
// storing nothing; the seed makes the sequence of draws repeatable. p <= 0
// turns it off.
func (r *Receiver) SetRandomFailure(p float64, status int, seed int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.randP, r.randStatus = p, status
	r.rng = rand.New(rand.NewPCG(uint64(seed), 0xf1))
}

// SetLatency delays every answer by d (0 removes the delay).
func (r *Receiver) SetLatency(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latency = d
}

// RejectWhere permanently answers status, with a text reason, to every
// request that contains a record for which match is true; nothing of such a
// request is stored. Rules add up; the first that matches decides.
func (r *Receiver) RejectWhere(status int, match func(record map[string]any) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejects = append(r.rejects, reject{status: status, match: match})
}

// handle answers one request; abort is closed when its server is stopped
// without waiting.
func (r *Receiver) handle(w http.ResponseWriter, req *http.Request, abort <-chan struct{}) {
	r.mu.Lock()
	r.requests++
	r.inFlight++
	r.peak = max(r.peak, r.inFlight)
	latency := r.latency
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
	}()

	status, reason, recs := r.accept(w, req)
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-req.Context().Done():
		case <-abort:
		case <-r.quit:
		}
		if t.Stop() {
			// Stopped early: the client went away or the server is being
			// stopped. Store nothing and cut the connection without an
			// answer; returning would send an implicit 200.
			panic(http.ErrAbortHandler)
		}
	}
	if status == http.StatusOK {
		status, reason = r.fault(recs)
	}
	if status == http.StatusOK {
		if err := r.store(recs); err != nil {
			status, reason = http.StatusInternalServerError, err.Error()
		}
	}
	r.mu.Lock()
	r.statuses[status]++
	r.mu.Unlock()
	if status == http.StatusOK {
		// Fluentd answers 200 with an empty body.
		w.WriteHeader(http.StatusOK)
		return
	}
	if status == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close")
	}
	// Fluentd's error answers: text/plain "<code> <text>\n<reason>\n".
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s\n%s\n", status, http.StatusText(status), reason)
}

// accept parses a request as in_http does, returning the records or the
// status and reason of a refusal.
func (r *Receiver) accept(w http.ResponseWriter, req *http.Request) (int, string, []record) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return http.StatusMethodNotAllowed, "POST records", nil
	}
	tag := strings.ReplaceAll(strings.TrimPrefix(req.URL.Path, "/"), "/", ".")
	if tag == "" || strings.HasPrefix(tag, ".") || strings.Contains(tag, "..") {
		return http.StatusBadRequest, fmt.Sprintf("'tag' parameter is invalid: %q", req.URL.Path), nil
	}
	r.mu.Lock()
	limit := r.bodyLimit
	r.mu.Unlock()
	body, err := readBody(w, req, limit)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, "request body is too large", nil
		}
		return http.StatusBadRequest, err.Error(), nil
	}
	raws, err := split(body)
	if err != nil {
		return http.StatusBadRequest, err.Error(), nil
	}
	recs := make([]record, len(raws))
	for i, raw := range raws {
		recs[i] = record{tag: tag, raw: raw}
	}
	return http.StatusOK, "", recs
}

// SetBodyLimit is in_http's body_size_limit: a larger request is answered
// 413 (0 restores the default, 32 MiB).
func (r *Receiver) SetBodyLimit(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodyLimit = n
}

// decompressors read the bodies of each Content-Encoding it accepts.
var decompressors = map[string]func(io.Reader) (io.ReadCloser, error){
	"gzip":    func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) },
	"deflate": zlib.NewReader,
}

func readBody(w http.ResponseWriter, req *http.Request, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = maxBody
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, limit)
	enc := strings.ToLower(req.Header.Get("Content-Encoding"))
	switch decompress, ok := decompressors[enc]; {
	case enc == "" || enc == "identity":
	case !ok:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
	default:
		zr, err := decompress(body)
		if err != nil {
			return nil, fmt.Errorf("bad %s body: %w", enc, err)
		}
		defer zr.Close()
		body = zr
	}
	// The limit applies to the decompressed body too.
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return b, nil
}

// split turns a body into records: an object is one record, an array one
// per element. Anything else (including NDJSON) is refused: Fluentd would
// drop it silently, which no test should rely on.
func split(body []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the first value")
	}
	v = bytes.TrimSpace(v)
	switch {
	case len(v) > 0 && v[0] == '{':
		return []json.RawMessage{v}, nil
	case len(v) > 0 && v[0] == '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(v, &elems); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		for i, e := range elems {
			if e = bytes.TrimSpace(e); len(e) == 0 || e[0] != '{' {
				return nil, fmt.Errorf("element %d of the array is not a JSON object", i)
			}
			elems[i] = e
		}
		return elems, nil
	default:
		return nil, errors.New("the body is neither a JSON object nor an array of objects")
	}
}

// fault applies the injected failures and rejection rules to a valid
// request.
func (r *Receiver) fault(recs []record) (int, string) {
	r.mu.Lock()
	status, reason, rejects := r.injected()
	r.mu.Unlock()
	if status != http.StatusOK || len(rejects) == 0 {
		return status, reason
	}
	for i, rec := range recs {
		var m map[string]any
		if err := json.Unmarshal(rec.raw, &m); err != nil {
			return http.StatusBadRequest, err.Error()
		}
		for _, rj := range rejects {
			if rj.match(m) {
				return rj.status, fmt.Sprintf("record %d rejected: %s", i, summary(m))
			}
		}
	}
	return http.StatusOK, ""
}

// injected draws the injected failures; mu must be held.
func (r *Receiver) injected() (status int, reason string, rejects []reject) {
	if r.failFirst > 0 {
		r.failFirst--
		return r.failStatus, "injected failure", nil
	}
	if r.randP > 0 && r.rng.Float64() < r.randP {
		return r.randStatus, "injected random failure", nil
	}
	return http.StatusOK, "", r.rejects
}

func summary(m map[string]any) string {
	var parts []string
	for _, k := range []string{"event", "uid", "ei"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, " ")
}

// store keeps the records of a successful request, and appends them to the
// tag's file when Dir is set.
func (r *Receiver) store(recs []record) error {
	if len(recs) == 0 {
		return nil // an empty array: nothing to emit
	}
	for i := range recs {
		recs[i].key = key(recs[i])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.Dir != "" {
		var buf bytes.Buffer
		for _, rec := range recs {
			if err := json.Compact(&buf, rec.raw); err != nil {
				return err
			}
			buf.WriteByte('\n')
		}
		f, err := r.file(recs[0].tag)
		if err != nil {
			return err
		}
		if _, err := f.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
	}
	for _, rec := range recs {
		if _, ok := r.byTag[rec.tag]; !ok {
			r.tags = append(r.tags, rec.tag)
		}
		r.byTag[rec.tag] = append(r.byTag[rec.tag], len(r.records))
		r.records = append(r.records, rec)
	}
	return nil
}

// key identifies a record for CountByUID: its uid, else tag/ei.
func key(rec record) string {
	var m struct{ UID, EI json.RawMessage }
	_ = json.Unmarshal(rec.raw, &m) // a valid object: fields are raw JSON or absent
	if uid := scalar(m.UID); uid != "" {
		return uid
	}
	return rec.tag + "/" + scalar(m.EI)
}

// scalar is the text of a JSON string or number ("" for null or absent).
func scalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if f, err := strconv.ParseFloat(n.String(), 64); err == nil {
			return strconv.FormatFloat(f, 'f', -1, 64) // 3 and 3.0 are the same index
		}
		return n.String()
	}
	return ""
}

// file opens Dir/<tag>.jsonl for appending once; mu must be held.
func (r *Receiver) file(tag string) (*os.File, error) {
	if f, ok := r.files[tag]; ok {
		return f, nil
	}
	f, err := os.OpenFile(filepath.Join(r.cfg.Dir, tag+".jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	r.files[tag] = f
	return f, nil
}
