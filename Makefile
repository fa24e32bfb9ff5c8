# Mamori — build, test, demo. `make help` lists the targets.
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: help build test test-short test-windows bench demo clean

help:
	@echo "make demo          build both programs, start the server (embedded etcd + SQLite) and an agent enrolled to it"
	@echo "make test          run every test (race detector on)"
	@echo "make test-windows  run the agent's tests as windows/amd64 binaries under Wine (.ci/wine/setup first)"
	@echo "make build         build bin/mamori-server and bin/mamori-agent for this machine, and Windows binaries"
	@echo "make bench         run the benchmarks once"

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

clean:
	rm -rf $(BIN) .demo
