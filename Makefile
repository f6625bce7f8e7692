# berth: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go
REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/berth-dev/berth/version.Revision=$(REVISION)

# Packages with concurrency run under the race detector.
RACE_PKGS := ./content/... ./events/... ./metadata/... ./gc/... ./filters/... ./daemon/... ./services/... \
	./pull/... ./remotes/... ./snapshots/... ./archive/... ./mount/... ./runtime/... ./cmd/berth-shim-runc-v2/ \
	./cri/... ./network/...

.PHONY: build demo demo-stop test deps-test lint unit integration bench-footprint bench-pull bench-run clean

# No cgo and no grpc tracing: 4 MiB less resident memory (bench/footprint).
# (The race detector needs cgo, so only the build turns it off.)
BUILDFLAGS := -tags grpcnotrace -ldflags "$(LDFLAGS)"

build:
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -o bin/ ./cmd/...

demo:
	scripts/setup.sh demo
	$(MAKE) build
	scripts/demo.sh

demo-stop:
	scripts/demo.sh stop

test:
	scripts/setup.sh test
	$(MAKE) build lint unit integration

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -race $(RACE_PKGS)
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -E '/(integration|bench)(/|$$)' | \
		grep -v -E 'berth/(content|events|metadata|gc|filters|daemon|services|pull|remotes|snapshots|archive|mount|runtime|cmd/berth-shim-runc-v2|cri|network)(/|$$)')
	$(GO) test -count=1 ./bench/...

integration:
	BERTHD=$(CURDIR)/bin/berthd $(GO) test -count=1 -v ./integration/ 2>&1 | tee /tmp/berth-integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; exit $${PIPESTATUS[0]}

bench-footprint: build
	$(GO) run ./bench/footprint -berthd bin/berthd

bench-pull:
	bench/pull/run.sh

bench-run:
	bench/run/run.sh

clean:
	rm -rf bin/
