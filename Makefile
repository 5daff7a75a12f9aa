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
	$(CARGO) clippy --workspace --all-targets --locked --features dropgate-functions/pubsub,dropgate-tests/pubsub -- -D warnings
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --workspace --no-deps --locked --quiet

test: lint ## setup + lint + the whole test suite + the infrastructure checks
	$(CARGO) test --workspace --locked
	$(CARGO) test --locked -p dropgate-functions --features pubsub --lib pubsub
	$(CARGO) test --locked -p dropgate-tests --features pubsub --test pubsub_emulator
	DROPGATE_VENV=$(STATE_DIR)/venv DROPGATE_INFRA_OUT=$(STATE_DIR)/infra-tests infra-tests/run.sh

# Demo drop settings: `make local USERS=50000 STOCK=500 WIN_PROBABILITY=0.1 RATE=5000`.
USERS ?= 20000
STOCK ?= 100
WIN_PROBABILITY ?= 0.05
RATE ?= 2000
DROPGATE := target/release/dropgate

# TLS=1: the stack runs as deployed (TLS-only servers, passwords, SASL/SCRAM), a new
# state dir of its own so it never meets a plaintext stack.
TLS ?=
ifeq ($(TLS),1)
LOCAL_UP_FLAGS := --tls
override STATE_DIR := $(STATE_DIR)-tls
endif
# REDIS_CLUSTER=3: Redis as a cluster of that many primaries (a stack of its own).
REDIS_CLUSTER ?=
ifneq ($(REDIS_CLUSTER),)
LOCAL_UP_FLAGS += --redis-cluster $(REDIS_CLUSTER)
override STATE_DIR := $(STATE_DIR)-cluster
endif

local: setup ## the main job: run a whole drop on this machine (USERS, STOCK, WIN_PROBABILITY, RATE, TLS=1, REDIS_CLUSTER=3)
	@echo "==> building release binaries"
	$(CARGO) build --workspace --release --locked
	@echo "==> starting the local stack and the four functions"
	@trap '$(DROPGATE) stack down --state-dir $(STATE_DIR); exit 130' INT TERM; \
	$(DROPGATE) local up --state-dir $(STATE_DIR) $(LOCAL_UP_FLAGS); \
	eval "$$($(DROPGATE) stack env --state-dir $(STATE_DIR))"; \
	echo "==> a simulated crowd of $(USERS) users through the real HTTP API (Ctrl-C stops everything)"; \
	$(DROPGATE) demo --state-dir $(STATE_DIR) --users $(USERS) --stock $(STOCK) \
	  --win-probability $(WIN_PROBABILITY) --rate $(RATE); \
	echo; \
	echo "make local: the stack and the functions keep running:"; \
	echo "  queue-api          $$DROPGATE_API_URL  (docs/api.md)"; \
	echo "  waiting-room page  $$DROPGATE_API_URL/e/<event id>  (local sign-in; try a new event: dropgate event create/open)"; \
	echo "  live view          $(DROPGATE) event watch --id <event id>  (after the eval below; p/r/c pause, resume, close)"; \
	echo "  logs               $(STATE_DIR)/logs/"; \
	echo "  variables          eval \"\$$($(DROPGATE) stack env --state-dir $(STATE_DIR))\""; \
	echo "  stop everything    make local-down"

local-down: ## stop everything make local started
	@if [ -x target/release/dropgate ]; then target/release/dropgate stack down --state-dir $(STATE_DIR); \
	elif [ -x target/debug/dropgate ]; then target/debug/dropgate stack down --state-dir $(STATE_DIR); \
	else echo "no dropgate binary built; nothing to stop"; fi

# Benchmarks run on a stack of their own, removed afterwards. BENCH_ARGS shrinks them,
# e.g. BENCH_ARGS="--requests 5000 --draw-messages 50000 --drop-users 20000".
# DROP_USERS=1000000 runs only the big drop (stock DROP_STOCK) and the memory figure
# at that many waiting users: `make bench DROP_USERS=1000000`.
BENCH_STATE_DIR ?= $(STATE_DIR)/bench-stack
BENCH_ARGS ?=
DROP_USERS ?=
DROP_STOCK ?= 10000
ifneq ($(DROP_USERS),)
BENCH_ARGS += --only drop,memory --drop-users $(DROP_USERS) --drop-stock $(DROP_STOCK) --memory-users $(DROP_USERS)
endif

bench: setup ## the headline performance figures, next to the machine's own limits (target/bench/)
	@echo "==> building release binaries"
	$(CARGO) build --workspace --release --locked
	@trap '$(DROPGATE) stack down --purge --state-dir $(BENCH_STATE_DIR) >/dev/null' EXIT; \
	$(DROPGATE) local up --state-dir $(BENCH_STATE_DIR); \
	$(DROPGATE) bench --state-dir $(BENCH_STATE_DIR) --report-dir target/bench $(BENCH_ARGS)

clean: ## remove build output
	$(CARGO) clean
