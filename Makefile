# Mamori — build, test, demo. `make help` lists the targets.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(BUILD_DATE)

.PHONY: help build test test-short test-windows bench demo clean dist test-installers

help:
	@echo "make demo          build both programs, start the server (embedded etcd + SQLite) and an agent enrolled to it"
	@echo "make test          run every test (race detector on)"
	@echo "make test-windows  run the agent's tests as windows/amd64 binaries under Wine (.ci/wine/setup first)"
	@echo "make build         build bin/mamori-server and bin/mamori-agent for this machine, and Windows binaries"
	@echo "make bench         run the benchmarks once"
	@echo "make dist          dist/: MSIs, .deb, .rpm, SBOMs, SHA256SUMS (SIGN_CERT=cert.pem SIGN_KEY=key.pem [SIGN_TS=URL] signs)"
	@echo "make test-installers  make dist signed with a throwaway certificate, MSI tables, msiexec under Wine, dpkg/rpm"

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/mamori-server ./server
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/mamori-agent ./agent
	$(GO) build -trimpath -o $(BIN)/mamori-loadgen ./loadgen
	GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/windows-amd64/mamori-agent.exe ./agent
	GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/windows-amd64/mamori-server.exe ./server

test:
	$(GO) test -race -timeout 30m ./...

test-short:
	$(GO) test -short ./...

test-windows:
	.ci/wine/gotest -timeout 20m ./agent/... ./shared/...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

demo:
	./scripts/demo.sh

# Release artefacts; see installers/dist.sh and docs/operations.md.
dist:
	VERSION=$(VERSION) COMMIT=$(COMMIT) BUILD_DATE=$(BUILD_DATE) SIGN_CERT=$(SIGN_CERT) SIGN_KEY=$(SIGN_KEY) SIGN_TS=$(SIGN_TS) installers/dist.sh

test-installers:
	installers/test.sh

clean:
	rm -rf $(BIN) .demo dist
