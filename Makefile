# codex-openai-wrapper — build, test and run (GNU make).
#
#   make login  sign in to ChatGPT without the Codex CLI (device code; ARGS=--browser, --status, ...)
#   make run    build the filter, render the Envoy config from .dev.vars + env, start Envoy and
#               bring changed settings, logins and keys to it while it runs
#   make test   lint, unit tests, a short fuzz run, build, config validation, end-to-end tests
#               (what CI runs)
#   make fuzz   the fuzz targets (fuzz/README.md), long: FUZZ_SECONDS per target, FUZZ_TARGET, FUZZ_SEED
#   make build compose-config && docker compose up    the same on the official Envoy image
#   make envoy-example   rewrite envoy/envoy.example.yaml (the configuration for default settings)
#
# envoy/render.py takes every setting from the native settings tool (src/bin/codex-settings),
# which it builds with `cargo build --bin codex-settings` when needed.

SHELL        := bash
.SHELLFLAGS  := -euo pipefail -c
# `make test` must stop at the first failing step, in order, even under -j.
.NOTPARALLEL:

PYTHON       ?= python3
WASM_TARGET  := wasm32-wasip1
WASM         := target/$(WASM_TARGET)/release/codex_openai_wrapper.wasm
VENV         := .venv
VENV_PY      := $(VENV)/bin/python
VENV_ENVOY   := $(VENV)/bin/envoy
VENV_STAMP   := $(VENV)/.requirements.stamp
REQUIREMENTS := tests/requirements.txt
# The Node clients the end-to-end tests drive (Codex CLI, the AI SDK), pinned by the lock file.
NODE_CLIENTS := tests/node
NODE_STAMP   := $(NODE_CLIENTS)/node_modules/.install.stamp
SYSTEM_CA    := /etc/ssl/certs/ca-certificates.crt
# The Rust release rust-toolchain.toml pins.
RUST_TOOLCHAIN := $(shell sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
CARGO_DENY_VERSION := 0.20.2
FUZZ_CRATE   := codex-openai-wrapper-fuzz

# docker compose: the configuration docker-compose.yml mounts, with container paths.
COMPOSE_CONFIG ?= target/envoy/compose.yaml
DEV_VARS       ?= .dev.vars
CONTAINER_WASM := /etc/envoy/codex_openai_wrapper.wasm

# `make validate` also renders every optional upstream at once (placeholder URLs: Envoy only
# resolves them when a request needs them).
VALIDATE_ALL_UPSTREAMS := \
  UPSTREAM_BASE_URL=https://api.openai.com/v1/ \
  OLLAMA_API_URL=http://127.0.0.1:11434/ollama \
  INSTRUCTIONS_BASE_URL=https://raw.githubusercontent.com/example/prompts/main/prompt.md \
  INSTRUCTIONS_CODEX_URL=https://raw.githubusercontent.com/example/prompts/main/codex.md \
  TOKEN_STORE=etcd ETCD_ENDPOINT=http://127.0.0.1:2379 \
  CORS_ALLOW_ORIGINS=https://app.example.com,http://localhost:3000

.PHONY: all venv node-clients toolchain wasm-target test-services build lint deny unit fuzz-short fuzz e2e validate test run \
  login compose-config envoy-example clean

all: build

# The venv is rebuilt only when the pinned requirements change.
venv: $(VENV_STAMP)

$(VENV_STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

# npm ci only when package.json or the lock file change; a machine without npm fails here,
# not in the tests.
node-clients: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_CLIENTS)/package.json $(NODE_CLIENTS)/package-lock.json
	@command -v npm >/dev/null || { echo "npm not found: the end-to-end tests need Node.js 20 or newer with npm" >&2; exit 1; }
	cd $(NODE_CLIENTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# rust-toolchain.toml names a release; rustup refuses to run a toolchain file's toolchain that
# is not installed. A machine whose `stable` is that release gets stable under the release's
# name, laid out as rustup lays out its own (`rustup toolchain link` refuses release names);
# any other machine installs the release.
toolchain:
	@if ! rustup toolchain list | grep '^$(RUST_TOOLCHAIN)-' >/dev/null; then \
	  stable=$$(rustc +stable --version 2>/dev/null | cut -d' ' -f2 || true); \
	  if [ "$$stable" = '$(RUST_TOOLCHAIN)' ]; then \
	    host=$$(rustc +stable -vV | sed -n 's/^host: //p'); \
	    ln -s "stable-$$host" "$$(rustup show home)/toolchains/$(RUST_TOOLCHAIN)-$$host"; \
	    echo "rust-toolchain.toml: Rust $(RUST_TOOLCHAIN) is this machine's stable toolchain"; \
	  else \
	    rustup toolchain install '$(RUST_TOOLCHAIN)' --profile minimal \
	      --component clippy,rustfmt --target $(WASM_TARGET); \
	  fi; \
	fi

# rustup only when missing: `rustup target add` may go to the network even when installed.
# (grep without -q: under pipefail an early-exiting grep could fail the pipeline.)
wasm-target: toolchain
	@rustup target list --installed | grep -x '$(WASM_TARGET)' >/dev/null || rustup target add $(WASM_TARGET)
	@rustup component list --installed | grep '^clippy' >/dev/null || rustup component add clippy
	@rustup component list --installed | grep '^rustfmt' >/dev/null || rustup component add rustfmt

# --lib: the module alone (the settings tool is a native program).
build: wasm-target
	cargo build --release --target $(WASM_TARGET) --lib

lint: wasm-target venv
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p $(FUZZ_CRATE) --all-targets -- -D warnings
	cargo clippy --release --target $(WASM_TARGET) -- -D warnings
	$(VENV)/bin/ruff check tests envoy bench tools

# Licences, duplicate crates and sources (deny.toml) need only the lock file. Advisories need
# the RustSec database, which cargo-deny fetches from GitHub: where that fails (a machine that
# reaches only the package registries) this step says in capitals that advisories were NOT
# checked, and `DENY_ADVISORIES=require` (or `make deny-advisories`) makes it a failure.
DENY_ADVISORIES ?= if-reachable
deny: toolchain
	@[ "$$(cargo deny --version 2>/dev/null)" = "cargo-deny $(CARGO_DENY_VERSION)" ] || \
	  cargo install --locked cargo-deny@=$(CARGO_DENY_VERSION)
	cargo deny --workspace --all-features check licenses bans sources
	@if cargo deny fetch db 2>/dev/null; then \
	  cargo deny --workspace --all-features check advisories; \
	elif [ '$(DENY_ADVISORIES)' = require ]; then \
	  echo "cargo deny: the RustSec advisory database cannot be fetched, advisories cannot be checked" >&2; exit 1; \
	else \
	  echo "cargo deny: ADVISORIES NOT CHECKED: the RustSec advisory database cannot be fetched from here;" \
	    "run \`make deny-advisories\` where GitHub is reachable"; \
	fi

.PHONY: deny-advisories
deny-advisories:
	$(MAKE) deny DENY_ADVISORIES=require

unit: toolchain
	cargo test

# A minute of fuzzing in all (FUZZ_SHORT_SECONDS per target, two at a time), the same every
# run: a fixed seed.
FUZZ_SHORT_SECONDS ?= 8
fuzz-short: toolchain
	FUZZ_SECONDS=$(FUZZ_SHORT_SECONDS) FUZZ_SEED=1 FUZZ_ITERATIONS= FUZZ_REPLAY= FUZZ_SAVE_NEW=0 \
	  cargo test -p $(FUZZ_CRATE) --profile fuzz -- --nocapture

# The long run: a new seed each time unless FUZZ_SEED is given; inputs that showed new
# behaviour land in target/fuzz/new-corpus/, failures in target/fuzz/failures/.
FUZZ_SECONDS    ?= 300
FUZZ_SEED       ?= $(shell date +%s)
FUZZ_ITERATIONS ?=
FUZZ_TARGET     ?=
fuzz: toolchain
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SEED=$(FUZZ_SEED) FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) FUZZ_SAVE_NEW=1 \
	  cargo test -p $(FUZZ_CRATE) --profile fuzz -- --nocapture $(FUZZ_TARGET)

# Render with defaults only (no .dev.vars, no stray environment) and let Envoy load it,
# module included, in both header modes, then once more with every optional upstream set
# (`make validate WASM=other.wasm` to try another module). Machines without the Debian CA
# bundle validate against certifi's (installed in the venv with requests).
validate: build venv
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	ca='$(SYSTEM_CA)'; [ -f "$$ca" ] || ca=$$($(VENV_PY) -c 'import certifi; print(certifi.where())'); \
	for portable in 0 1; do \
	  env -i PATH="$$PATH" ENVOY_PORTABLE=$$portable ENVOY_CA_BUNDLE="$$ca" \
	    $(VENV_PY) envoy/render.py --env-file /dev/null --wasm $(WASM) --out "$$tmp/envoy-$$portable.yaml"; \
	  $(VENV_ENVOY) --mode validate -c "$$tmp/envoy-$$portable.yaml" --log-level warn; \
	done; \
	env -i PATH="$$PATH" ENVOY_CA_BUNDLE="$$ca" $(VALIDATE_ALL_UPSTREAMS) \
	  $(VENV_PY) envoy/render.py --env-file /dev/null --wasm $(WASM) --out "$$tmp/envoy-all.yaml"; \
	$(VENV_ENVOY) --mode validate -c "$$tmp/envoy-all.yaml" --log-level warn

# Servers the end-to-end tests start themselves (etcd for TOKEN_STORE=etcd), from Debian.
test-services:
	@command -v etcd >/dev/null || { \
	  sudo=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq etcd-server >/dev/null; }

e2e: build venv node-clients test-services
	$(VENV_PY) -m pytest -q tests

test: toolchain venv node-clients wasm-target test-services lint deny unit fuzz-short build validate e2e

run: venv build
	$(VENV_PY) envoy/run.py

# The native login program (src/bin/codex-login) writes $CODEX_HOME/auth.json, which `make run`
# reads. `make login ARGS=--browser`, `ARGS="--label work"` (an account in CODEX_AUTH_DIR),
# `ARGS=--status`; `cargo run --bin codex-login -- --help` lists the rest.
ARGS ?=
login: toolchain
	cargo run --quiet --bin codex-login -- $(ARGS)

# From $(DEV_VARS) alone, not the shell environment: compose gives the container only that
# file, so the clusters here must come from the same values the filter will see.
compose-config:
	env -i PATH="$$PATH" $(PYTHON) envoy/render.py --env-file $(DEV_VARS) --out $(COMPOSE_CONFIG) \
	  --wasm-path-in-config $(CONTAINER_WASM) --listen-port 8787 --listen-address 0.0.0.0
	@echo "rendered $(COMPOSE_CONFIG); start with: docker compose up"

# The example is rendered from no settings at all; tests/test_render.py fails when it is stale.
envoy-example:
	env -i PATH="$$PATH" $(PYTHON) envoy/render.py --example --out envoy/envoy.example.yaml

clean:
	cargo clean

# Gateway overhead benchmark (bench/README.md; never part of `make test` or CI): the core's
# native micro-benchmarks (`cargo bench --bench core`), then plain Envoy vs Envoy + the filter
# on a native mock backend (arms a-f, wrk, time to first content token, memory per VM over
# 100k requests). Installs wrk with apt-get when missing. Writes bench/results/<timestamp>/ and
# rewrites bench/RESULTS.md and bench/chart.svg. ENVOY_CONCURRENCY sets Envoy's worker count
# (default 1); `make bench BENCH_ARGS="--reps 1 --duration 3"` for a quick look.
BENCH_ARGS ?= --reps 3 --duration 10
.PHONY: bench
bench: venv wasm-target
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# Where the filter's time goes, per phase: instruction counts under callgrind (needs valgrind),
# A/B configurations and a probe build of the module (bench/README.md).
.PHONY: bench-phases
bench-phases: venv wasm-target
	$(VENV_PY) bench/phases.py $(PHASES_ARGS)
