# dropgate: the commands a newcomer and CI run. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: help setup build lint test local bench clean

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

test: lint ## setup + lint + the whole test suite
	$(CARGO) test --workspace --locked

local: setup ## the main job: run a whole drop on this machine
	$(CARGO) build --workspace --release --locked
	@echo
	@echo "make local: the release binaries are built (target/release/)."
	@echo "  The local stack (Redis, PostgreSQL, Kafka-protocol broker) and the simulated"
	@echo "  drop are not part of this build yet; today you can check event settings:"
	@echo "    target/release/dropgate event check --stock 100 --win-probability 0.05"
	@target/release/dropgate event check --stock 100 --win-probability 0.05

bench: setup ## the headline performance figures (see README, Performance)
	@echo "make bench: the benchmarks arrive with the end-to-end drop; nothing to measure yet." >&2
	@exit 2

clean: ## remove build output
	$(CARGO) clean
