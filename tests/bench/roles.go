package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apievents "github.com/gravitational/teleport/api/types/events"

	"github.com/fdfwd/teleport-event-handler/internal/deliver/eventjson"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/forward"
	"github.com/fdfwd/teleport-event-handler/internal/deliver/wire/jsonhttp"
	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/teleportsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// The helper processes talk to the orchestrator over stdin and stdout, one
// line at a time; each exits when its stdin closes.

// serverTLS loads a server certificate of the bundle in dir and requires
// client certificates from the CA in caFile, as testpki's ServerTLS does.
func serverTLS(dir, name, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func pkiFiles(dir string) *testpki.Bundle {
	return &testpki.Bundle{
		Dir: dir, TeleportCAFile: filepath.Join(dir, "teleport-ca.crt"), IdentityFile: filepath.Join(dir, "teleport-identity"),
		FluentdCAFile: filepath.Join(dir, "fluentd-ca.crt"), FluentdClientCertFile: filepath.Join(dir, "fluentd-client.crt"),
		FluentdClientKeyFile:  filepath.Join(dir, "fluentd-client.key"),
		FluentdServerCertFile: filepath.Join(dir, "fluentd-server.crt"), FluentdServerKeyFile: filepath.Join(dir, "fluentd-server.key"),
	}
}

// runTeleport serves the plan's backlog from the test Teleport server.
func runTeleport(pkiDir string, p plan) error {
	cfg, err := serverTLS(pkiDir, "teleport-server", filepath.Join(pkiDir, "teleport-ca.crt"))
	if err != nil {
		return err
	}
	// Both audit log APIs: each daemon run picks one with --export-mode.
	srv, err := teleportsrv.Start(teleportsrv.Config{TLS: cfg, Export: true})
	if err != nil {
		return err
	}
	defer srv.Close()
	audit, recs := p.build()
	// Converting events is most of the set-up: use both cores. AddEvents
	// keeps them sorted whatever the order of the calls.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	chunks := runtime.GOMAXPROCS(0) * 4
	size := (len(audit) + chunks - 1) / chunks
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := 0; i < len(audit); i += size {
		part := audit[i:min(i+size, len(audit))]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := srv.AddEvents(part...); err != nil {
				errs <- err
			}
		}()
	}
	for _, r := range recs {
		evs := teleportsrv.GenerateRecording(r.SID, r.Events, r.Upload.Add(-10*time.Minute))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := srv.AddRecording(r.SID, evs...); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	audit, recs = nil, nil
	runtime.GC()
	fmt.Printf("ready %s\n", srv.Addr())
	waitStdin(nil)
	return nil
}

// runFluentd runs a receiver until stdin closes; "stats" answers with the
// records, the distinct records, the requests received and the TLS
// handshakes made.
func runFluentd(pkiDir string) error {
	cfg, err := serverTLS(pkiDir, "fluentd-server", filepath.Join(pkiDir, "fluentd-ca.crt"))
	if err != nil {
		return err
	}
	var handshakes atomic.Int64
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		handshakes.Add(1)
		return nil, nil
	}
	rcv, err := fluentdsrv.Start(fluentdsrv.Config{TLS: cfg})
	if err != nil {
		return err
	}
	defer rcv.Close()
	fmt.Printf("ready %s %s\n", rcv.URL(), rcv.ForwardURL())
	waitStdin(func(cmd string) string {
		switch cmd {
		case "count":
			return strconv.Itoa(rcv.Count())
		case "stats":
			return fmt.Sprintf("%d %d %d %d", rcv.Count(), len(rcv.CountByUID()), rcv.Requests(), handshakes.Load())
		}
		return "unknown command"
	})
	return nil
}

// post is one request of the load generator.
type post struct {
	path   string
	events [][]byte
	n      int // events in it
}

// bodies are the plan's events as the daemon sends them: the same encoder
// over the same unstructured events, the audit events to /test.log and
// each recording's to /session.<sid>.log, in groups of up to batch.
func bodies(p plan, batch int) ([]post, error) {
	audit, recs := p.build()
	var posts []post
	add := func(path string, evs []apievents.AuditEvent) error {
		group := make([][]byte, 0, batch)
		flush := func() {
			if len(group) > 0 {
				posts = append(posts, post{path: path, events: group, n: len(group)})
				group = make([][]byte, 0, batch)
			}
		}
		for _, ev := range evs {
			u, err := apievents.ToUnstructured(ev)
			if err != nil {
				return err
			}
			b, err := eventjson.Marshal(u.Unstructured)
			if err != nil {
				return err
			}
			group = append(group, b)
			if len(group) == batch {
				flush()
			}
		}
		flush()
		return nil
	}
	if err := add("/test.log", audit); err != nil {
		return nil, err
	}
	for _, r := range recs {
		evs := teleportsrv.GenerateRecording(r.SID, r.Events, r.Upload.Add(-10*time.Minute))
		if err := add("/session."+r.SID+".log", evs); err != nil {
			return nil, err
		}
	}
	return posts, nil
}

// runLoadgen prepares the plan's bodies, then for each "run URL CONNS
// BATCH LIMIT" line POSTs the first LIMIT events with CONNS keep-alive mTLS
// connections (the daemon's own client) and answers "EVENTS POSTS SECONDS
// FAILURES CPU" where CPU is the process time the run took.
func runLoadgen(pkiDir string, p plan) error {
	pki := pkiFiles(pkiDir)
	creds, err := wire.LoadCredentials(pki.FluentdCAFile, pki.FluentdClientCertFile, pki.FluentdClientKeyFile)
	if err != nil {
		return err
	}
	prepared := map[int][]post{}
	fmt.Println("ready")
	waitStdin(func(line string) string {
		f := strings.Fields(line)
		if len(f) != 5 || f[0] != "run" {
			return "error: want run URL CONNS BATCH LIMIT"
		}
		conns, _ := strconv.Atoi(f[2])
		batch, _ := strconv.Atoi(f[3])
		limit, _ := strconv.Atoi(f[4])
		posts, ok := prepared[batch]
		if !ok {
			if posts, err = bodies(p, batch); err != nil {
				return "error: " + err.Error()
			}
			prepared[batch] = posts
			runtime.GC()
		}
		events, n, secs, failures, cpu := load(f[1], creds, conns, posts, limit)
		return fmt.Sprintf("%d %d %.3f %d %.3f", events, n, secs, failures, cpu)
	})
	return nil
}

// load sends posts (up to limit events) over conns connections.
func load(base string, creds *wire.Credentials, conns int, posts []post, limit int) (events, n int, secs float64, failures int64, cpu float64) {
	for n < len(posts) && (limit <= 0 || events < limit) {
		events += posts[n].n
		n++
	}
	posts = posts[:n]
	client := wire.Schemes{"https": jsonhttp.New(creds, conns),
		forward.Scheme: forward.New(creds, forward.Options{Hostname: "loadgen"})}
	defer client.Close()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	cpu0 := cpuSeconds()
	began := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sender := client.NewSender()
			defer sender.Close()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(posts) {
					return
				}
				for {
					res := sender.Send(ctxBackground, base+posts[i].path, posts[i].events)
					if res.Class == wire.Success {
						break
					}
					failed.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return events, n, time.Since(began).Seconds(), failed.Load(), cpuSeconds() - cpu0
}

// waitStdin answers command lines until stdin closes.
func waitStdin(answer func(string) string) {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if answer != nil {
			fmt.Println(answer(strings.TrimSpace(sc.Text())))
		}
	}
}
