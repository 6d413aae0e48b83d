# winch: the README's two commands are `make run` and `make test`.
GO      ?= go
BIN     := bin/winch
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Go packages whose tests share goroutines: run them under the race detector.
PKGS    := ./...

.PHONY: build images services clickhouse run test lint bench fuzz chaos clean compose-images compose-test

# bin/winch and, beside it, bin/winch-supervise: the process executor's
# per-job supervisor, a small binary that starts fast (worker/process).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/winch
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(dir $(BIN))winch-supervise ./cmd/winch-supervise

# The images winch needs, from local files only (no registry is reachable or
# needed): winch-toolbox, where the core commands run (Debian's static
# busybox on scratch), and winch itself (ops/Dockerfile).
images: build
	@test -x /bin/busybox || { echo "installing busybox-static"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq busybox-static >/dev/null; }
	./$(BIN) images
	docker build -q -f ops/Dockerfile -t winch:latest . >/dev/null
	@echo "built winch-toolbox:latest and winch:latest"

# compose.yaml's ClickHouse image, winch-clickhouse:latest: Debian's
# clickhouse-server on a Debian base made here with mmdebstrap; skipped when
# it is up to date (ops/clickhouse/build.sh).
compose-images:
	ops/clickhouse/build.sh

# compose.yaml brought up for real: three NATS servers, three workers, the
# sink, the gateway, ClickHouse; jobs run, a NATS server is killed, all of it
# torn down (ops/compose-test.sh). CI runs it after make test.
compose-test: images compose-images
	ops/compose-test.sh

# Runs winch for real: the embedded broker and a worker that runs commands in
# containers (or as processes, with WINCH_EXECUTOR=process), data under
# $$WINCH_DATA_DIR (default: winch under your cache dir). Ctrl-C stops it.
run: images
	./$(BIN) dev

# What the tests need installed: ClickHouse (Debian's package; the tests start
# their own servers with ops/clickhouse.sh) and Chromium (Debian's, for the
# console's browser tests). NATS is embedded; Docker is the machine's.
services:
	ops/clickhouse.sh install
	@command -v chromium >/dev/null || { echo "installing chromium"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# A ClickHouse for development on 127.0.0.1:9000, data in .data/clickhouse:
#   make clickhouse && WINCH_CLICKHOUSE_DSN=clickhouse://127.0.0.1:9000/winch make run
clickhouse:
	ops/clickhouse.sh start .data/clickhouse 9000

# The console's browser tests save their screenshots in out/screens (kept
# by CI; go test's own artifact directory is deleted after the run).
test: lint images services
	WINCH_ARTIFACTS=$(CURDIR)/out/screens $(GO) test -race -count=1 -timeout 15m $(PKGS)

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Benchmarks: results go in BENCHMARKS.md with the machine and the command.
BENCHTIME ?= 3s
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./bench/

# Fuzz each decoder and parser for FUZZTIME.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRequest$$' -fuzztime $(FUZZTIME) ./schema/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeControlRequest$$' -fuzztime $(FUZZTIME) ./schema/
	$(GO) test -run '^$$' -fuzz '^FuzzEachMember$$' -fuzztime $(FUZZTIME) ./schema/
	$(GO) test -run '^$$' -fuzz '^FuzzValidTokens$$' -fuzztime $(FUZZTIME) ./schema/
	$(GO) test -run '^$$' -fuzz '^FuzzValidateParams$$' -fuzztime $(FUZZTIME) ./schema/
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./modules/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSubmit$$' -fuzztime $(FUZZTIME) ./gateway/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./profile/
	$(GO) test -run '^$$' -fuzz '^FuzzSpecCheck$$' -fuzztime $(FUZZTIME) ./schedule/
	$(GO) test -run '^$$' -fuzz '^FuzzParseEach$$' -fuzztime $(FUZZTIME) ./schema/

# The kill -9 loop (worker/chaos_test.go) at full size: WINCH_CHAOS_JOBS jobs
# while worker processes are SIGKILLed every 2-4 s; WINCH_CHAOS_SEED repeats a
# run. Plain `go test` runs it with 100 jobs.
WINCH_CHAOS_JOBS ?= 300
chaos:
	WINCH_CHAOS_JOBS=$(WINCH_CHAOS_JOBS) $(GO) test -race -count=1 -timeout 30m -run '^TestChaosKillLoop$$' -v ./worker/

clean:
	-ops/clickhouse.sh stop .data/clickhouse
	rm -rf bin .data
