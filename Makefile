# dropgate: the commands a newcomer and CI run. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: help setup build lint test local local-down bench clean

STATE_DIR ?= .dropgate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install what is missing (apt packages, cargo tools), idempotent
	@scripts/setup.sh

build: setup ## build every crate (debug)
	$(CARGO) build --workspace --all-targets --locked

lint: setup ## rustfmt check, clippy with warnings as errors, docs with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --workspace --no-deps --locked --quiet

test: lint ## setup + lint + the whole test suite + the infrastructure checks
	$(CARGO) test --workspace --locked
	DROPGATE_VENV=$(STATE_DIR)/venv DROPGATE_INFRA_OUT=$(STATE_DIR)/infra-tests infra-tests/run.sh

local: setup ## the main job: run a whole drop on this machine
	$(CARGO) build --workspace --release --locked
	target/release/dropgate stack up --state-dir $(STATE_DIR)
	@echo
	@echo "make local: the local stack runs (Redis, PostgreSQL, tansu); load its variables with"
	@echo "    eval \"\$$(target/release/dropgate stack env --state-dir $(STATE_DIR))\""
	@echo "  The functions and the simulated drop are not part of this build yet."
	@echo "  Stop the stack with: make local-down"

local-down: ## stop everything make local started
	@if [ -x target/release/dropgate ]; then target/release/dropgate stack down --state-dir $(STATE_DIR); \
	elif [ -x target/debug/dropgate ]; then target/debug/dropgate stack down --state-dir $(STATE_DIR); \
	else echo "no dropgate binary built; nothing to stop"; fi

bench: setup ## the headline performance figures (see README, Performance)
	@echo "make bench: the benchmarks arrive with the end-to-end drop; nothing to measure yet." >&2
	@exit 2

clean: ## remove build output
	$(CARGO) clean
