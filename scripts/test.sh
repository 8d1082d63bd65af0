#!/usr/bin/env bash
# The project's test command (and CI's, via .ci/run). Works on a fresh Debian machine that has
# only the Rust toolchain, node >= 20 and npm: installs what the tests need when missing
# (Debian's chromium, tests/browser's npm packages), then runs, in order:
#   1. cargo fmt --check
#   2. cargo clippy --all-targets -- -D warnings
#   3. cargo test --release            (everything except the browser test)
#   4. the real-browser WHIP/WHEP test (tests/browser.rs -> tests/browser/whip_whep.mjs)
# Safe to run again: installed things are detected and skipped. Exits non-zero on the first
# failing step. Browser-test artifacts (SDP, getStats dumps, server log): tests/browser/out/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
BROWSER_DIR="$ROOT/tests/browser"
CHROMIUM_PATH=${CHROMIUM_PATH:-/usr/bin/chromium}
export CHROMIUM_PATH
# Everything the browser tests need is installed below: build.rs must not mark them ignored
# (it does when they are missing at build time), whatever an earlier build script run saw.
export HAWKER_BROWSER_TESTS=required
START=$SECONDS
STEP_START=$SECONDS
STEP_NAME=

step() {
  if [ -n "$STEP_NAME" ]; then
    printf '==== done: %s (%ds)\n' "$STEP_NAME" $((SECONDS - STEP_START))
  fi
  STEP_NAME=$1
  STEP_START=$SECONDS
  printf '\n==== [%s] %s\n' "$(date -u +%H:%M:%S)" "$1"
}

on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '\n==== FAILED in step: %s (exit %d, after %ds)\n' "${STEP_NAME:-setup}" "$rc" $((SECONDS - START)) >&2
  fi
}
trap on_exit EXIT

die() {
  echo "error: $*" >&2
  exit 1
}

# Run as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

echo "hawker test run in $ROOT (CI=${CI:-unset})"

# ---------------------------------------------------------------------------------------------
step "dependencies"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain"
for comp in rustfmt clippy; do
  sub=${comp/rustfmt/fmt}
  if ! cargo "$sub" --version >/dev/null 2>&1; then
    echo "installing Rust component $comp"
    rustup component add "$comp" || die "cargo $sub is missing and 'rustup component add $comp' failed"
  fi
done
echo "rust:     $(rustc --version)"

if [ -x "$CHROMIUM_PATH" ]; then
  echo "chromium: already installed at $CHROMIUM_PATH"
else
  [ "$CHROMIUM_PATH" = /usr/bin/chromium ] || die "CHROMIUM_PATH=$CHROMIUM_PATH does not exist"
  echo "chromium: installing Debian's chromium (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  [ -x "$CHROMIUM_PATH" ] || die "apt-get installed chromium but $CHROMIUM_PATH is missing"
fi
# The wrapper script prints a stray shell warning on some setups; keep only the version line.
echo "chromium: $("$CHROMIUM_PATH" --version 2>/dev/null | tail -n1)"

command -v node >/dev/null 2>&1 || die "node not found (node >= 20 is needed for the browser test)"
command -v npm >/dev/null 2>&1 || die "npm not found"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node >= 20 needed (playwright-core), found $(node --version)"
echo "node:     $(node --version), npm $(npm --version 2>/dev/null)"

# npm packages: install when node_modules does not match package-lock.json.
if (cd "$BROWSER_DIR" && node -e '
  const lock = require("./package-lock.json").packages;
  for (const [p, v] of Object.entries(lock)) {
    if (!p) continue;
    let have;
    try { have = require("./" + p + "/package.json").version; } catch { process.exit(1); }
    if (have !== v.version) process.exit(1);
  }' 2>/dev/null); then
  echo "npm:      tests/browser/node_modules up to date"
else
  echo "npm:      installing tests/browser packages (npm ci)"
  (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund)
fi

# ---------------------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

# ---------------------------------------------------------------------------------------------
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

# ---------------------------------------------------------------------------------------------
step "cargo test --release (all but the browser tests)"
cargo test --release --locked -- --skip browser_whip_whep_e2e --skip browser_frame_sync_and_shop

# ---------------------------------------------------------------------------------------------
step "browser test: cargo test --release --test browser (headless Chromium, WHIP/WHEP)"
# With CI set, a missing browser dependency fails the test instead of skipping it.
cargo test --release --locked --test browser -- --nocapture

# ---------------------------------------------------------------------------------------------
step "browser test: cargo test --release --test browser_shop (studio + viewer pages, frame sync, buying)"
cargo test --release --locked --test browser_shop -- --nocapture

step "summary"
STEP_NAME=
printf 'all steps passed in %ds\n' $((SECONDS - START))
