#!/usr/bin/env bash
# Tillbridge's test command (the one the README names, and what .ci/run calls).
#
#   scripts/test.sh                 install what is missing, then run every step
#   scripts/test.sh clippy test     run only the named steps (setup still runs)
#   scripts/test.sh --list          list the steps
#   TILLBRIDGE_FAIL_FAST=1 scripts/test.sh   stop at the first failing step
#   TILLBRIDGE_SKIP_SETUP=1 scripts/test.sh  do not install anything
#   TILLBRIDGE_TEST_PG_URL=postgres://... scripts/test.sh   use this PostgreSQL server (tests
#                                   create and drop their own databases) instead of a throwaway
#   TILLBRIDGE_SKIP_PG=1 scripts/test.sh     skip the PostgreSQL storage tests (explicitly; without
#                                   it and without a server, those tests fail)
#
# Works on a fresh Debian 12 machine as root; on a prepared machine the setup only checks and
# costs well under a second. Every step runs even if an earlier one failed (so one run shows
# every problem); the summary lists each step's result and time, and the exit status is
# non-zero if any step failed.
#
# Adding a step (PostgreSQL, headless Chromium, wasm-bindgen node tests, ...): write an
# `ensure_<thing>` function for what it needs installed and call it from `setup`, write a
# `step_<name>` function, and add `<name>` to STEPS below. A step function runs in a subshell
# with `set -e`, so it fails at its first failing command and may `cd` or `trap ... EXIT`
# freely (a throwaway Postgres cluster cleans up in its own EXIT trap).

set -euo pipefail

STEPS=(fmt clippy test wasm magento)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Build settings: identical in every session and in CI, so the target dir is reused
# (a fresh clone then rebuilds only the workspace crates). Only the folder may be overridden.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tillbridge-target}"
export CARGO_INCREMENTAL=0
export CARGO_PROFILE_DEV_DEBUG=line-tables-only

# The shared/ reference folder (vectors, specs, XSDs): the same rule as `tillbridge demo`.
if [ -z "${TILLBRIDGE_SHARED_DIR:-}" ]; then
  if [ -d "$repo/../shared" ]; then
    TILLBRIDGE_SHARED_DIR=$(cd "$repo/../shared" && pwd)
  else
    TILLBRIDGE_SHARED_DIR=/work/shared
  fi
fi
export TILLBRIDGE_SHARED_DIR

# ---------------------------------------------------------------------------------------------
# helpers

now_ms() { date +%s%3N; }

fmt_ms() { # 83456 -> 1m23.5s, 4567 -> 4.6s
  local ms=$1
  if [ "$ms" -ge 60000 ]; then
    printf '%dm%02d.%ds' $((ms / 60000)) $((ms % 60000 / 1000)) $((ms % 1000 / 100))
  else
    printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
  fi
}

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: need root (or sudo) to run: $*" >&2
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------
# setup: install only what is missing

# apt packages for the Magento module checks: PHP 8.2, PHPUnit 9.6, phpcs (PSR-12), xmllint.
ensure_apt_packages() {
  local missing=()
  command -v php >/dev/null 2>&1 || missing+=(php-cli)
  if ! command -v php >/dev/null 2>&1 \
    || ! php -r 'exit(extension_loaded("dom") && extension_loaded("xmlwriter") ? 0 : 1);'; then
    missing+=(php-xml)
  fi
  if ! command -v php >/dev/null 2>&1 || ! php -r 'exit(extension_loaded("mbstring") ? 0 : 1);'; then
    missing+=(php-mbstring)
  fi
  command -v phpcs >/dev/null 2>&1 || missing+=(php-codesniffer)
  command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
  command -v phpunit >/dev/null 2>&1 || missing+=(phpunit)
  if [ ${#missing[@]} -gt 0 ]; then
    say "setup: apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

# Rust: the wasm32 target (the core must build for it) and the fmt/clippy components.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs), then rerun" >&2
    return 1
  fi
  if ! command -v rustup >/dev/null 2>&1; then
    echo "warning: rustup not found; assuming rustfmt, clippy and wasm32-unknown-unknown exist" >&2
    return 0
  fi
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "setup: rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
  local installed
  installed=$(rustup component list --installed)
  for component in rustfmt clippy; do
    if ! grep -q "^$component" <<<"$installed"; then
      say "setup: rustup component add $component"
      rustup component add "$component"
    fi
  done
}

# Square's Python SDK (PyPI squareup, pinned in tests/square-emulator/sdk_check/requirements.txt)
# in a venv outside the clone; the emulator's SDK test drives the emulator with it.
SQUAREUP_VENV=/var/tmp/tillbridge-squareup-venv
ensure_python_squareup() {
  local req="$repo/tests/square-emulator/sdk_check/requirements.txt"
  local want
  want=$(grep -v '^#' "$req" | grep -m1 'squareup==' | sed 's/.*==//')
  if [ -x "$SQUAREUP_VENV/bin/python" ] \
    && [ "$("$SQUAREUP_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("squareup"))' 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "setup: python3 venv $SQUAREUP_VENV with squareup==$want"
  python3 -m venv "$SQUAREUP_VENV"
  "$SQUAREUP_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
}
export TILLBRIDGE_SQUAREUP_PYTHON="$SQUAREUP_VENV/bin/python"

# PyMagento (PyPI pymagento, pinned in tests/commerce-emulator/client_check/requirements.txt),
# a Magento client nobody here wrote, in the same venv; the Commerce emulator's client test
# drives the emulator with it.
ensure_python_pymagento() {
  local req="$repo/tests/commerce-emulator/client_check/requirements.txt"
  local want
  want=$(grep -v '^#' "$req" | grep -m1 'pymagento==' | sed 's/.*==//')
  if [ -x "$SQUAREUP_VENV/bin/python" ] \
    && [ "$("$SQUAREUP_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pymagento"))' 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "setup: pip install pymagento==$want into $SQUAREUP_VENV"
  [ -x "$SQUAREUP_VENV/bin/python" ] || python3 -m venv "$SQUAREUP_VENV"
  "$SQUAREUP_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
}
export TILLBRIDGE_PYMAGENTO_PYTHON="$SQUAREUP_VENV/bin/python"

# Headless Chromium and playwright-core (pinned in edge-service/tests/browser/package.json,
# installed outside the clone) for the dashboard check in edge-service/tests/api.rs; the test
# fails instead of skipping when setup has provided them (TILLBRIDGE_REQUIRE_BROWSER=1).
PLAYWRIGHT_DIR=/var/tmp/tillbridge-playwright
ensure_browser() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    say "setup: apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  local want have
  want=$(sed -n 's/.*"playwright-core": *"\([^"]*\)".*/\1/p' "$repo/edge-service/tests/browser/package.json")
  have=$(node -p "require('$PLAYWRIGHT_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    say "setup: npm install playwright-core@$want into $PLAYWRIGHT_DIR"
    mkdir -p "$PLAYWRIGHT_DIR"
    npm install --silent --no-audit --no-fund --prefix "$PLAYWRIGHT_DIR" "playwright-core@$want"
  fi
  export TILLBRIDGE_REQUIRE_BROWSER=1
}
export TILLBRIDGE_PLAYWRIGHT_DIR="$PLAYWRIGHT_DIR"
export TILLBRIDGE_CHROMIUM=/usr/bin/chromium

# PostgreSQL for the storage tests: libpq (diesel's postgres backend links it, so every build
# needs it) and the server binaries (initdb, pg_ctl) for a throwaway cluster.
pg_bindir() { # newest /usr/lib/postgresql/N/bin with initdb, or nothing
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}
ensure_postgres() {
  local missing=()
  [ -n "$(pg_bindir)" ] || missing+=(postgresql)
  # libpq-dev: the headers and the unversioned libpq.so the linker looks for.
  if ! [ -e /usr/include/postgresql/libpq-fe.h ] || ! compgen -G '/usr/lib/*/libpq.so' >/dev/null; then
    missing+=(libpq-dev)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    say "setup: apt-get install ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # The Debian package starts a cluster of its own; the tests never use it.
}

# A throwaway PostgreSQL cluster for the test step: initdb in a temp folder under /var/tmp,
# a free port on 127.0.0.1, the socket inside the folder, durability off (fsync,
# synchronous_commit, full_page_writes: a test cluster is never recovered). Exports
# TILLBRIDGE_TEST_PG_URL; stop_test_postgres (an EXIT trap of the step) removes it. Nothing
# happens when TILLBRIDGE_TEST_PG_URL is already set or TILLBRIDGE_SKIP_PG=1.
PG_TMP=''
PG_BIN=''
start_test_postgres() {
  if [ -n "${TILLBRIDGE_TEST_PG_URL:-}" ] || [ "${TILLBRIDGE_SKIP_PG:-}" = 1 ]; then
    return 0
  fi
  PG_BIN=$(pg_bindir)
  if [ -z "$PG_BIN" ]; then
    echo "error: PostgreSQL server binaries not found (apt-get install postgresql), or set TILLBRIDGE_TEST_PG_URL / TILLBRIDGE_SKIP_PG=1" >&2
    return 1
  fi
  local t0 port
  t0=$(now_ms)
  PG_TMP=$(mktemp -d /var/tmp/tillbridge-pg.XXXXXX)
  trap stop_test_postgres EXIT
  local run=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$PG_TMP"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$PG_BIN/initdb" -D "$PG_TMP/data" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync --no-instructions >"$PG_TMP/initdb.log" 2>&1 \
    || { cat "$PG_TMP/initdb.log" >&2; return 1; }
  local tries
  for tries in 1 2 3; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if "${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 30 -s \
      -o "-p $port -k $PG_TMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start; then
      export TILLBRIDGE_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
      echo "  throwaway PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($PG_TMP) in $(fmt_ms $(($(now_ms) - t0)))"
      return 0
    fi
    echo "  PostgreSQL did not start on port $port (try $tries):" >&2
    tail -n 5 "$PG_TMP/server.log" >&2 || true
  done
  return 1
}
stop_test_postgres() {
  if [ -n "$PG_TMP" ] && [ -d "$PG_TMP" ]; then
    if [ -f "$PG_TMP/data/postmaster.pid" ]; then
      local run=()
      [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
      "${run[@]}" "$PG_BIN/pg_ctl" -D "$PG_TMP/data" -m immediate -s stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_TMP"
  fi
  PG_TMP=''
}

setup() {
  if [ -n "${TILLBRIDGE_SKIP_SETUP:-}" ]; then
    return 0
  fi
  ensure_apt_packages
  ensure_postgres
  ensure_rust
  ensure_python_squareup
  ensure_python_pymagento
  ensure_browser
}

# ---------------------------------------------------------------------------------------------
# steps

step_fmt() {
  cargo fmt --all -- --check
}

step_clippy() {
  cargo clippy --workspace --all-targets -- -D warnings
}

step_test() {
  # The storage suite runs on SQLite and on PostgreSQL (edge-service/tests/store.rs).
  start_test_postgres
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
    # nextest does not run doctests.
    cargo test --workspace --doc
  else
    cargo test --workspace --no-fail-fast
  fi
}

step_wasm() {
  # The core is sans-I/O; building it for wasm32 is how CI keeps it that way.
  cargo build -p tillbridge-core -p tillbridge-wasm --target wasm32-unknown-unknown
}

step_magento() {
  "$repo/scripts/magento-check.sh"
}

describe() {
  case $1 in
    fmt) echo "cargo fmt --all -- --check" ;;
    clippy) echo "cargo clippy --workspace --all-targets -- -D warnings" ;;
    test) echo "cargo nextest run --workspace + cargo test --doc (or cargo test --workspace), with a throwaway PostgreSQL" ;;
    wasm) echo "cargo build -p tillbridge-core -p tillbridge-wasm --target wasm32-unknown-unknown" ;;
    magento) echo "scripts/magento-check.sh (php -l, phpcs PSR-12, XSD validation, PHPUnit)" ;;
    *) echo "$1" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# main

if [ "${1:-}" = "--list" ] || [ "${1:-}" = "-l" ]; then
  for s in "${STEPS[@]}"; do printf '%-8s %s\n' "$s" "$(describe "$s")"; done
  exit 0
fi
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 0
fi

selected=("$@")
if [ ${#selected[@]} -eq 0 ]; then
  selected=("${STEPS[@]}")
fi
for s in "${selected[@]}"; do
  if ! declare -F "step_$s" >/dev/null; then
    echo "error: unknown step '$s' (steps: ${STEPS[*]})" >&2
    exit 2
  fi
done

total_start=$(now_ms)
echo "tillbridge tests: $repo"
echo "  CARGO_TARGET_DIR=$CARGO_TARGET_DIR CARGO_INCREMENTAL=$CARGO_INCREMENTAL CARGO_PROFILE_DEV_DEBUG=$CARGO_PROFILE_DEV_DEBUG"
echo "  TILLBRIDGE_SHARED_DIR=$TILLBRIDGE_SHARED_DIR"

setup_start=$(now_ms)
setup
echo "  setup: $(fmt_ms $(($(now_ms) - setup_start)))"

results=()
failed=0
n=0
for s in "${selected[@]}"; do
  n=$((n + 1))
  say "[$n/${#selected[@]}] $s: $(describe "$s")"
  step_start=$(now_ms)
  set +e
  (set -e; "step_$s")
  rc=$?
  set -e
  took=$(fmt_ms $(($(now_ms) - step_start)))
  if [ $rc -eq 0 ]; then
    results+=("$(printf '  ok    %-8s %s' "$s" "$took")")
  else
    results+=("$(printf '  FAIL  %-8s %s (exit %d)' "$s" "$took" "$rc")")
    failed=$((failed + 1))
    if [ -n "${TILLBRIDGE_FAIL_FAST:-}" ]; then
      break
    fi
  fi
done

say "summary"
printf '%s\n' "${results[@]}"
echo "total: $(fmt_ms $(($(now_ms) - total_start)))"
if [ $failed -gt 0 ]; then
  echo "$failed step(s) failed"
  exit 1
fi
echo "all steps passed"
