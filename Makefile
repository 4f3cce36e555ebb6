# logferry: see README.md. Every target works on a fresh Debian machine with
# Go; what else it needs (Loki, built from the Go module proxy and cached
# under ~/.cache/logferry) it builds or tells you how to install.
SHELL := /bin/bash
GO ?= go
SHARED := ./shared/...
DEMO_DIR ?= $(CURDIR)/.tmp/demo
# What --version and logferry_build_info say (shared/buildinfo).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO := github.com/logferry/logferry/shared/buildinfo
LDFLAGS := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).revision=$(REVISION) -X $(BUILDINFO).date=$(BUILD_DATE)
export LF_LDFLAGS := $(LDFLAGS)

.PHONY: all build test chaos unit race integration bench fuzz demo loki generate fmt vet dockerd clean plugin sidecar sidecar-image release test-release plugin-push soak soak-short bench-peers

all: build

build:
	$(GO) build ./...

# The whole suite: formatting, vet, unit tests, race detector on the shared
# core, and the integration tests against a real Loki.
test: fmt vet dockerd loki
	LOKI_BIN="$$(scripts/loki path)" $(GO) test -count=1 -timeout 50m ./...
	LF_SOAK_SHORT=1 LOKI_BIN="$$(scripts/loki path)" $(GO) test -count=1 -timeout 15m -run '^TestSoakShort$$' ./soak/
	scripts/promtool-check
	$(GO) test -count=1 -race -short $(SHARED) ./plugin/...

# Installs Debian's docker.io when dockerd is missing (root; otherwise says
# what to run): the end-to-end tests, the chaos suite and the soak start a
# private dockerd of their own from it.
dockerd:
	scripts/dockerd ensure

# The fault suite's full forms (e2e/chaos_test.go): 20 containers through the
# plugin and the sidecar with Loki down 5 minutes, also with both killed,
# Loki rate limiting, a full spool filesystem, a damaged spool segment. About
# 15 minutes. Each test prints one RESULT line (figures in RELIABILITY.md);
# they are collected in .tmp/chaos.log.
chaos: dockerd loki
	@mkdir -p .tmp
	set -o pipefail; LF_CHAOS=full LOKI_BIN="$$(scripts/loki path)" $(GO) test -count=1 -v -timeout 60m \
		-run '^TestChaos' ./e2e/ 2>&1 | tee .tmp/chaos.log | grep -E '^(=== RUN|--- |\s+chaos_test.go:[0-9]+: RESULT|FAIL|ok|PASS)'
	@grep -h 'RESULT ' .tmp/chaos.log | sed 's/^.*RESULT /RESULT /'

# Unit tests only: -short skips everything that needs Loki or dockerd.
unit:
	$(GO) test -count=1 -short ./...

race:
	$(GO) test -count=1 -race $(SHARED)

fmt:
	@mkdir -p .tmp
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Builds (first time: ~15-20 minutes) or finds the pinned Loki binary.
loki:
	@scripts/loki path >/dev/null

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 $(SHARED)
	scripts/bench-plugin
	scripts/bench-sidecar
	scripts/bench-steady

# logferry's plugin and sidecar beside Grafana's Loki Docker driver and
# Promtail under the same steady load, interleaved, median of 3 (built the
# first time from the Go module proxy into the cache, ~10-25 minutes; then
# ~20 minutes). Needs root: the driver runs in a private mount namespace.
bench-peers:
	scripts/peers bench

# Runs each fuzz target for FUZZTIME (default 2m).
FUZZTIME ?= 2m
fuzz:
	scripts/fuzz $(FUZZTIME)

demo: loki
	scripts/demo $(DEMO_DIR)

# Builds the plugin and installs it into the dockerd of DOCKER_HOST as
# $(PLUGIN) (default logferry).
plugin:
	scripts/plugin

# The sidecar binary (static) and its FROM scratch image (DOCKER_HOST's dockerd).
sidecar:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/logferry-sidecar ./cmd/logferry-sidecar

sidecar-image: sidecar
	cp /etc/ssl/certs/ca-certificates.crt bin/ca-certificates.crt
	DOCKER_BUILDKIT=0 docker build -q -t logferry-sidecar:latest .

generate:
	scripts/generate

clean:
	rm -rf .tmp rootfs bin

# Every release artifact, amd64 and arm64, into dist/ with SHA256SUMS:
# make release VERSION=0.1.0 (plugin rootfs tarballs, sidecar binaries and
# images, .deb packages).
release:
	scripts/release $(VERSION)

# The release tests (about 3 minutes, as root): the arm64 binaries and unit
# tests under qemu-user, then the .deb installed, its unit's command run
# against a private dockerd and Loki, removed and purged. .ci/run runs it
# after make test.
test-release: loki
	scripts/release 0.0.0-test
	scripts/test-arm64 0.0.0-test
	scripts/test-deb dist/logferry-sidecar_0.0.0~test_amd64.deb

# Builds the plugin as $(VERSION) and pushes $(REGISTRY)/logferry:$(VERSION)
# (ARCHES="amd64 arm64" also pushes $(VERSION)-arm64) via DOCKER_HOST's dockerd.
plugin-push:
	@test -n "$(REGISTRY)" || { echo "make plugin-push REGISTRY=host:port VERSION=x.y.z"; exit 1; }
	scripts/plugin-push "$(REGISTRY)" "$(VERSION)"

# The soak (soak/, cmd/logferry-soak, scripts/soak): the plugin and the
# sidecar at once for SOAK_DURATION under a steady 5,000 lines/s, container
# churn and scheduled disturbances; writes soak/<date>/report.md (targets,
# PNG charts, CSV) and fails when a target is missed. Takes SOAK_DURATION
# plus about 2 minutes, and about 7 GB under /tmp for 30 minutes.
SOAK_DURATION ?= 30m
soak: dockerd loki
	SOAK_DURATION=$(SOAK_DURATION) LOKI_BIN="$$(scripts/loki path)" scripts/soak

# The 3-minute form with bounds fit for 3 minutes (about 4-5 minutes), its
# timing bounds (p99, outage drain) asserted too; make test runs it with
# those reported.
soak-short: dockerd loki
	LF_SOAK_SHORT=timing LOKI_BIN="$$(scripts/loki path)" $(GO) test -count=1 -v -timeout 15m -run '^TestSoakShort$$' ./soak/
