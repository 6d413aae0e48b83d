# winch: the README's two commands are `make run` and `make test`.
GO      ?= go
BIN     := bin/winch
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Go packages whose tests share goroutines: run them under the race detector.
PKGS    := ./...

.PHONY: build run test lint bench fuzz clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/winch

# Runs winch for real: the embedded broker and a worker, data under
# $$WINCH_DATA_DIR (default: winch under your cache dir). Ctrl-C stops it.
run: build
	./$(BIN) dev

test: lint
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

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
	$(GO) test -run '^$$' -fuzz '^FuzzValidateParams$$' -fuzztime $(FUZZTIME) ./schema/
	$(GO) test -run '^$$' -fuzz '^FuzzParseManifest$$' -fuzztime $(FUZZTIME) ./modules/

clean:
	rm -rf bin
