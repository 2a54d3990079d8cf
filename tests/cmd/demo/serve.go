package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"text/template"
	"time"
)

// testbedTOML is a configuration for the daemon against the bed: every
// path absolute, so that it works from any working directory.
var testbedTOML = template.Must(template.New("toml").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(`# Written by make testbed (tests/cmd/demo -serve): the daemon against the
# test Teleport server and the Fluentd-compatible receiver it runs.
storage = {{q .Storage}}
start-time = {{q .Start}}
timeout = "1s"

[forward.fluentd]
ca = {{q .CA}}
cert = {{q .Cert}}
key = {{q .Key}}
url = {{q .URL}}
session-url = {{q .SessionURL}}
# The receiver's forward input (in_forward), without a shared key:
# url = {{q .ForwardURL}}
# session-url = {{q .ForwardSessionURL}}

[teleport]
addr = {{q .Addr}}
identity = {{q .Identity}}
`))

// serve writes the daemon's configuration, says how to start it, and keeps
// the servers running until SIGINT or SIGTERM, with a tally of what
// arrived every 10 seconds.
func serve(b *bed, binary string) error {
	conf, err := b.writeConfig()
	if err != nil {
		return err
	}
	step("ready; in another terminal:\n      %s -c %s start\n    (%s start --help lists the options; the file names the forward URLs too)", binary, conf, binary)
	step("Ctrl-C stops the servers; what arrived is in %s, one file per tag", b.dirs["received"])

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	last := -1
	for {
		select {
		case <-ctx.Done():
			fmt.Println()
			step("stopping: %d of %d records arrived", b.fd.Count(), b.n+b.sessionEvents)
			return nil
		case <-tick.C:
			if n := b.fd.Count(); n != last {
				last = n
				fmt.Printf("  %s  %d of %d records arrived, in %d requests\n", time.Now().Format(time.TimeOnly), n, b.n+b.sessionEvents, b.fd.Requests())
			}
		}
	}
}

// writeConfig writes the daemon's configuration for the bed and returns
// its path.
func (b *bed) writeConfig() (string, error) {
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	path := abs(filepath.Join(b.out, "teleport-event-handler.toml"))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	err = testbedTOML.Execute(f, map[string]string{
		"Storage": abs(b.dirs["storage"]), "Start": b.start.Format(time.RFC3339),
		"CA": abs(b.pki.FluentdCAFile), "Cert": abs(b.pki.FluentdClientCertFile), "Key": abs(b.pki.FluentdClientKeyFile),
		"URL": b.fd.URL() + "/test.log", "SessionURL": b.fd.URL() + "/session",
		"ForwardURL": b.fd.ForwardURL() + "/test.log", "ForwardSessionURL": b.fd.ForwardURL() + "/session",
		"Addr": b.tp.Addr(), "Identity": abs(b.pki.IdentityFile),
	})
	if err != nil {
		return "", err
	}
	return path, f.Close()
}
