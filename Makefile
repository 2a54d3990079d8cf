# teleport-event-handler: ships Teleport's audit log to Fluentd.
#
#   make build   the binary, at bin/teleport-event-handler
#   make test    the whole test suite (unit, end-to-end), race detector on
#   make demo    the daemon against a local test Teleport and Fluentd receiver
#   make testbed the test Teleport server and receiver alone, until Ctrl-C,
#                for a daemon started by hand (TESTBED_FLAGS: see -help)
#   make chaos   the fault-injection suite (TEH_CHAOS_SEED=N replays a run)
#   make explore the fault explorer: random seeded schedules for EXPLORE_TIME
#                (10m); SEED=N replays a seed (EXPLORE_SHORT=1: a short one)
#   make bench   throughput against the test Teleport server and receiver
#                (BENCH_FLAGS=-quick for a short run; make bench-memory: RSS
#                with a 1,000,000-event backlog)
#   make test-alerts       unit tests of the Prometheus alert rules (promtool)
#   make gen-example-mtls  example mTLS certificates in example/keys/
#   make helm-check        helm lint and helm template of the chart

GO       ?= go
BIN      := bin/teleport-event-handler
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# grpcnotrace: gRPC without golang.org/x/net/trace, whose html/template would
# keep the linker from dropping unused methods (issue 27: ~10 MB).
TAGS     := grpcnotrace
GOFLAGS  += -trimpath

export GOFLAGS

.PHONY: all build test test-unit test-e2e test-alerts test-tools demo testbed chaos explore bench bench-memory vet clean deps gen-example-mtls helm-check

all: build

# The first build is silent for minutes without a word of why: say it.
deps:
	@command -v $(GO) >/dev/null || { echo "Go is required (https://go.dev/dl/)"; exit 1; }
	@test -x $(BIN) || echo "==> first build: downloading the Go modules (about 230 MB) and compiling the daemon" \
		"and its dependencies once, about 2.5 minutes on a quiet 2-core machine (longer on a busy one); later builds take seconds"
	$(GO) mod download

build: deps
	$(GO) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/teleport-event-handler

vet: deps
	$(GO) vet ./...

# The end-to-end tests drive the binary built here (TEH_BINARY), and a real
# rsyslogd they start themselves (TEH_REQUIRE_RSYSLOG: fail, not skip,
# without one).
test: build vet test-alerts test-tools
	TEH_BINARY=$(CURDIR)/$(BIN) TEH_REQUIRE_RSYSLOG=1 $(GO) test -race -count=1 -timeout 20m ./...

# What the Go tests run besides Go, from Debian's packages when missing:
# systemd-analyze verifies the unit in deploy/ (systemd); rsyslogd receives
# the syslog outputs in tests/rsyslogsrv and the end-to-end tests (rsyslog,
# with its TLS driver and RELP input, which a preinstalled rsyslog may
# lack). rsyslog's postinst starts the system service only where systemd
# runs (not in a container); that one listens on no TCP port, and the
# tests' rsyslogd has its own configuration, pid file and ports.
test-tools:
	@command -v systemd-analyze >/dev/null || { apt-get install -y --no-install-recommends systemd >/dev/null 2>&1 || \
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends systemd >/dev/null; }; }
	@{ PATH=$$PATH:/usr/sbin command -v rsyslogd && dpkg -s rsyslog-gnutls rsyslog-relp; } >/dev/null 2>&1 || { apt-get install -y --no-install-recommends rsyslog rsyslog-gnutls rsyslog-relp >/dev/null 2>&1 || \
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends rsyslog rsyslog-gnutls rsyslog-relp >/dev/null; }; }

# The alert rules' unit tests, with promtool (Debian's prometheus package,
# installed when missing).
test-alerts:
	@command -v promtool >/dev/null || { apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 || \
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends prometheus >/dev/null; }; }
	cd deploy && promtool test rules prometheus-alerts_test.yaml

test-unit: deps test-tools
	$(GO) test -race -count=1 -timeout 10m $$($(GO) list ./... | grep -v /tests/)

test-e2e: build test-tools
	TEH_BINARY=$(CURDIR)/$(BIN) TEH_REQUIRE_RSYSLOG=1 $(GO) test -race -count=1 -timeout 20m -v ./tests/e2e/

demo: build
	$(GO) run ./tests/cmd/demo -binary $(CURDIR)/$(BIN)

testbed: build
	$(GO) run ./tests/cmd/demo -serve -binary $(CURDIR)/$(BIN) -out testbed-out $(TESTBED_FLAGS)

# A binary with the panic hook compiled in (-tags faults), then every fault
# scenario; the table is printed and written to chaos-results.json.
chaos: deps
	$(GO) build -tags 'faults,$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/teleport-event-handler-faults ./cmd/teleport-event-handler
	TEH_CHAOS=1 TEH_BINARY=$(CURDIR)/bin/teleport-event-handler-faults TEH_CHAOS_OUT=$(CURDIR)/chaos-results.json \
		$(GO) test -count=1 -timeout 30m -v ./tests/faults/

# Seeds for EXPLORE_TIME, or the one SEED names; the table is printed and
# written to explore-results.json (docs/explore.md), and with
# EXPLORE_DOC=docs/explore.md into its explore section.
# EXPLORE_SHRINK=1 shrinks a failing seed's plan; EXPLORE_CUT=f2,a100
# replays a shrunk plan (what the shrinking prints).
# make test runs the short form: four fixed short seeds.
EXPLORE_TIME ?= 10m
explore: build
	TEH_EXPLORE=1 TEH_EXPLORE_TIME=$(EXPLORE_TIME) TEH_EXPLORE_SEED=$(SEED) TEH_EXPLORE_SHORT=$(EXPLORE_SHORT) \
		TEH_EXPLORE_DOC='$(abspath $(EXPLORE_DOC))' TEH_EXPLORE_FROM=$(abspath $(EXPLORE_FROM)) \
		TEH_EXPLORE_SHRINK=$(EXPLORE_SHRINK) TEH_EXPLORE_CUT=$(EXPLORE_CUT) \
		TEH_EXPLORE_OUT=$(CURDIR)/explore-results.json TEH_BINARY=$(CURDIR)/$(BIN) \
		$(GO) test -count=1 -timeout 24h -v -run 'TestExplore$$' ./tests/explore/

# The test Teleport server, the receiver and the daemon in separate processes
# (see tests/bench); results in bench-out/.
bench: build
	$(GO) run ./tests/bench -binary $(CURDIR)/$(BIN) $(BENCH_FLAGS)

bench-memory: build
	$(GO) run ./tests/bench -memory -binary $(CURDIR)/$(BIN) $(BENCH_FLAGS)

# The certificates, fluent.conf, configuration and role of `configure`, made
# by the daemon itself (no openssl needed): PASS is the passphrase of
# server.key (generated and printed when empty), KEYLEN the RSA key size.
# Given through the environment, PASS needs no shell quoting.
KEYLEN ?= 4096
gen-example-mtls: export FDFWD_PASSWORD = $(PASS)
gen-example-mtls: build
	$(BIN) configure --length '$(KEYLEN)' --force example/keys

# helm itself, built from the Go module proxy into bin/: lint, and the same
# objects from helm template as from the Go renderer that make test uses.
HELM_VERSION ?= v3.22.0
helm-check: deps
	GOBIN=$(CURDIR)/bin $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	PATH=$(CURDIR)/bin:$$PATH $(GO) test -count=1 -v -run 'TestHelm|TestManifests' ./deploy/

clean:
	rm -rf bin
