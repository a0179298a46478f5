# ctha: build, test, lint, fuzz. Run `make help` for the targets.

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 20s
# Minimizing what a short fuzz run finds would take most of the run (up to
# 60 s an input by default); a crasher is kept as found.
FUZZMINIMIZETIME ?= 0s
# Timing-sensitive namespace tests run one package at a time.
TESTFLAGS ?= -p 1 -count=1 -timeout 25m

export CGO_ENABLED = 0
# Tools .ci/deps unpacks rather than installs (promtool) come first.
export PATH := $(CURDIR)/.cache/bin:$(PATH)

.PHONY: all build test test-race lint fuzz chaos bench-vrrp bench-defer bench-perf bench bench-docs soak demo deps-demo deps-test man deb deb-check help clean

all: lint test build

## build: the static binary bin/ctha
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ctha ./cmd/ctha

## test: the race run (test-race), then every test, namespace and end-to-end tests included (run as root; installs what it lacks)
test: deps-test test-race
	$(GO) test $(TESTFLAGS) ./...

# What `make demo` and `make test` need from the distribution: installed
# with apt-get when root, else named in one line (.ci/deps, which CI runs too).
deps-demo deps-test:
	@.ci/deps $(@:deps-%=%)

## test-race: the unit tests under the race detector (-short: no namespace tests; needs cgo and gcc)
test-race:
	CGO_ENABLED=1 $(GO) test -race -short -count=1 -timeout 15m ./...

## lint: gofmt, go vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## fuzz: a short run ($(FUZZTIME)) of every fuzz target
fuzz:
	GO='$(GO)' .ci/fuzz $(FUZZTIME) $(FUZZMINIMIZETIME)

## chaos: seeded random faults against the pair with live flows: 10 min at each of two random seeds (root; CHAOS_SEEDS=1,2 CHAOS_DURATION=2m replay)
CHAOS_SEEDS    ?= random,random
CHAOS_DURATION ?= 10m
chaos:
	CTHA_CHAOS_SEEDS='$(CHAOS_SEEDS)' CTHA_CHAOS_DURATION='$(CHAOS_DURATION)' \
	  $(GO) test -count=1 -run '^TestChaos$$' -timeout 90m -v ./integration/

## demo: see it work: a ctha pair in namespaces, live TCP flows, the master killed (root; DEMO_KEEP=1, DEMO_ADVERT=300ms)
demo: deps-demo build
	$(GO) build -trimpath -o bin/flowgen ./integration/flowgen/cmd/flowgen
	$(GO) build -trimpath -o bin/ctha-demo ./integration/demo
	@DEMO_KEEP='$(DEMO_KEEP)' DEMO_ADVERT='$(DEMO_ADVERT)' DEMO_JSON='$(DEMO_JSON)' bin/ctha-demo $(DEMO_FLAGS)

## bench-vrrp: takeover speed of ctha and keepalived, same lab, alternating; writes integration/bench/results/vrrp-DATE.json (root)
bench-vrrp:
	CTHA_BENCH_OUT=$(CURDIR)/integration/bench/results \
	  $(GO) test -run '^$$' -bench BenchmarkVRRPTakeover -benchtime 1x -timeout 10m -v ./integration/ | grep -v '^=== '

## bench-defer: what multiprimary's defer costs a new flow (20k/s, on and off) and the highest new-flow rate; writes integration/bench/results/defer/defer-DATE.json (root)
bench-defer:
	CTHA_REQUIRE_NETNS=1 CTHA_BENCH_OUT=$(CURDIR)/integration/bench/results \
	  $(GO) test -run '^$$' -bench BenchmarkDefer -benchtime 1x -timeout 20m -v ./integration/ | grep -v '^=== '

## bench-perf: in-process figures for 1M flows: codec, caches, the whole pipeline
bench-perf:
	@$(GO) test -run '^$$' -bench 'Codec1M' -benchtime 3x ./ctsync/wire/ | grep '^Benchmark'
	@$(GO) test -run '^$$' -bench 'Cache1M' -benchtime 1x -timeout 10m ./ctsync/ | grep '^Benchmark'
	@$(GO) test -run '^$$' -bench 'Pipeline1M' -benchtime 3x -timeout 10m ./ctsync/ | grep '^Benchmark'

## bench: ctha against keepalived + conntrackd (documented, direct and best-configured), same lab, alternating;
## writes integration/bench/results, docs/benchmarks.md and README.md's headline (root; under 30 min)
## (CTHA_BENCH_RUNS=N rounds per case, CTHA_BENCH_QUICK=1 a small grid, CTHA_BENCH_BEST=all best in every failover case,
## CTHA_BENCH_LONG=1 the no-realtime 20 ms short-advert cells for 10 minutes: about 50 min)
bench:
	@for c in keepalived conntrackd tcpdump; do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	  if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	CTHA_REQUIRE_NETNS=1 CTHA_BENCH_OUT=$(CURDIR)/integration/bench/results CTHA_BENCH_DOCS=$(CURDIR)/docs CTHA_BENCH_README=$(CURDIR)/README.md \
	  $(GO) test -run '^$$' -bench '^BenchmarkStacks$$' -benchtime 1x -timeout 90m -v ./integration/ | grep -v '^=== '

## bench-docs: docs/benchmarks.md, its chart and README.md's headline again from a results file (RESULTS=..., default the newest results-*.json)
RESULTS ?= $(lastword $(sort $(wildcard integration/bench/results/results-*.json)))
bench-docs:
	$(GO) run ./integration/bench/cmd/benchdocs '$(RESULTS)'

## soak: a ctha pair under conntrack churn (5k creates + 5k deletes/s over 100k entries) and 200 live flows for
## 30 minutes; fails unless RSS and goroutines stay flat and the tables end equal (root; SOAK=5m shorter, RSS judged from 16m,
## SOAK_WARMUP=1m its warm-up, default 5 minutes or a third of the run; SOAK_TIMEOUT for runs over 50 minutes)
SOAK         ?= 30m
SOAK_WARMUP  ?=
SOAK_TIMEOUT ?= 60m
soak:
	CTHA_REQUIRE_NETNS=1 CTHA_SOAK_DURATION=$(SOAK) CTHA_SOAK_WARMUP=$(SOAK_WARMUP) \
	  $(GO) test -count=1 -v -run '^TestSoak$$' -timeout $(SOAK_TIMEOUT) ./integration/

## man: write docs/man/ctha.8 and ctha.hcl.5 again from ctha's help and the README's reference (TestManPages fails while they differ)
man:
	CTHA_UPDATE_MAN=1 $(GO) test -count=1 -run '^TestManPages$$' ./cmd/ctha/

## deb: the Debian package bin/ctha_VERSION_amd64.deb, with nfpm (DEB_VERSION=1.2.3 names the version; default from a v1.2.3 tag, else 0.0~gitYYYYMMDDHHMM.COMMIT, ordered by commit time)
DEB_VERSION ?= $(shell v=$$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null) && echo "$$v" | sed 's/^v//' || \
  echo "0.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d%H%M 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo dev)")
deb: build
	rm -rf bin/deb bin/ctha_*.deb && mkdir -p bin/deb/examples
	bin/ctha completion bash > bin/deb/ctha.bash
	bin/ctha completion zsh > bin/deb/_ctha
	bin/ctha completion fish > bin/deb/ctha.fish
	gzip -9n < docs/man/ctha.8 > bin/deb/ctha.8.gz
	gzip -9n < docs/man/ctha.hcl.5 > bin/deb/ctha.hcl.5.gz
	gzip -9n < README.md > bin/deb/README.md.gz
	cp examples/*.hcl examples/ctha.nft examples/ctha-sysctl.conf bin/deb/examples/
	chmod 0644 bin/deb/examples/*
	{ printf 'ctha (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- %s  %s\n' '$(DEB_VERSION)' \
	    "$$(git describe --always --dirty 2>/dev/null || echo source)" 'ctha developers <ctha@users.noreply.github.com>' \
	    "$$(date -R -u -d @$$(git log -1 --format=%ct 2>/dev/null || date +%s))"; } | gzip -9n > bin/deb/changelog.gz
	DEB_VERSION='$(DEB_VERSION)' $(GO) tool nfpm package -f packaging/deb/nfpm.yaml -p deb -t bin/

## deb-check: build the package and check it: contents (dpkg-deb -c), lintian, ctha version and man -l from the unpacked tree
deb-check: deb
	@.ci/deps deb-check
	.ci/deb-check bin/ctha_*.deb

## clean: remove build output
clean:
	rm -rf bin

help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)
