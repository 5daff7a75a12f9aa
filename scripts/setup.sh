#!/usr/bin/env bash
# Installs what dropgate's build, tests and local stack need, and only what is
# missing. Idempotent: a second run prints "ok" lines and changes nothing.
#
#   scripts/setup.sh            everything `make test` and `make local` need
#
# OS packages come from apt-get (as root, or through sudo when available); tools from
# `cargo install`. Each step says what it installs before it does it.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root for: $*  (run as root or install sudo)"; return 1
  fi
}

APT_UPDATED=0
# need_apt PACKAGE [CHECK_PATH]: installs PACKAGE unless dpkg (or CHECK_PATH) shows it.
need_apt() {
  local package=$1 check=${2:-}
  if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
     || { [ -n "$check" ] && [ -e "$check" ]; }; then
    say "ok      apt $package"
    return
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "running apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  say "install apt $package"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}

need_rustup_component() {
  local component=$1 probe=$2
  if $probe --version >/dev/null 2>&1; then
    say "ok      rustup component $component"
  else
    say "install rustup component $component"
    rustup component add "$component"
  fi
}

# need_cargo_tool BINARY CRATE VERSION FEATURES NOTE: `cargo install`s CRATE unless
# BINARY of that version is already on PATH or in ~/.cargo/bin.
need_cargo_tool() {
  local binary=$1 crate=$2 version=$3 features=$4 note=$5
  local found
  found=$(command -v "$binary" 2>/dev/null || true)
  [ -z "$found" ] && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/$binary" ] && found="${CARGO_HOME:-$HOME/.cargo}/bin/$binary"
  if [ -n "$found" ] && { cargo install --list 2>/dev/null | grep -q "^$crate v$version:" \
       || "$found" --version 2>/dev/null | grep -q "$version"; }; then
    say "ok      cargo $crate $version"
    return
  fi
  say "install cargo $crate $version ($note)"
  cargo install "$crate" --locked --version "$version" ${features:+--features "$features"}
}

command -v cargo >/dev/null || { say "cargo is missing: install Rust with rustup first"; exit 1; }
need_rustup_component rustfmt "cargo fmt"
need_rustup_component clippy "cargo clippy"

# The local stack: Redis and PostgreSQL from the OS; `useradd` to run PostgreSQL as
# an unprivileged user when we are root.
need_apt redis-server /usr/bin/redis-server
need_apt redis-tools /usr/bin/redis-benchmark
need_apt postgresql
need_apt postgresql-client /usr/bin/psql
need_apt passwd /usr/sbin/useradd
# librdkafka is built from source by the rdkafka crate, with TLS and SASL against the
# system OpenSSL.
need_apt build-essential /usr/bin/make
need_apt pkg-config /usr/bin/pkg-config
need_apt zlib1g-dev /usr/include/zlib.h
need_apt libssl-dev /usr/include/openssl/ssl.h

# `dropgate stack up --tls`: the broker (tansu) speaks plaintext only, so stunnel
# terminates TLS in front of it.
need_apt stunnel4 /usr/bin/stunnel4

# aws-lc (the Pub/Sub client's TLS provider) may build with cmake and bindgen.
need_apt cmake /usr/bin/cmake
need_apt libclang-dev

# The infrastructure checks (infra-tests/run.sh) run pytest, python-hcl2, checkov and
# kubernetes-validate from venvs under the state dir.
need_apt python3 /usr/bin/python3
need_apt python3-venv

# The waiting-room page is tested in a real browser: headless Chromium driven over
# WebDriver (tests/tests/waiting_room.rs).
need_apt chromium /usr/bin/chromium
need_apt chromium-driver /usr/bin/chromedriver

# tansu: the Kafka-protocol broker (sqlite:// storage needs libsql, memory:// dynostore).
need_cargo_tool tansu tansu 0.6.0 dynostore,libsql \
  "the Kafka-protocol broker; compiling it takes about 8 to 13 minutes on 2 cores, once"

say "done"
