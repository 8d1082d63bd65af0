#!/usr/bin/env bash
# The project's test command (and CI's, via .ci/run). Works on a fresh Debian machine that has
# only the Rust toolchain, node >= 20.19 with npm, and python3: installs what the tests need when missing
# (Debian's chromium, ffmpeg and GStreamer, the GStreamer webrtchttp plugin built from crates.io,
# tests/browser's and tests/platform's npm packages), then runs, in order:
#   1. cargo fmt --check
#   2. cargo clippy --all-targets -- -D warnings
#   3. what an integrating platform touches first (tests/platform/, node + python3):
#      OpenAPI lint (redocly, recommended-strict), the client generated from the document
#      (openapi-typescript) type-checked, the SDK package (declarations current, npm pack,
#      installed into a third-party site, examples/viewer type-checked)
#   4. cargo test --release            (everything except the browser tests; includes the
#      GStreamer interop cell, tests/interop_gstreamer.rs, in a private network namespace, and
#      the aiortc cells, tests/interop_aiortc.rs)
#   5. platform end-to-end: the generated client, examples/viewer and the example webhook
#      receivers (Node and Python) against target/release/hawker
#   6. the real-browser WHIP/WHEP, shop, replay and simulcast tests (tests/browser*.rs ->
#      tests/browser/*.mjs; the simulcast one shapes a viewer's downlink with tc inside a
#      network namespace of its own)
#   7. the shard-fault and crash-point tests (engine_faults, crash_points), built with the
#      test-only `fault-injection` feature
#   8. each fuzz target for 20 s when a nightly toolchain is present (cargo-fuzz 0.13.2)
# Safe to run again: installed things are detected and skipped. Exits non-zero on the first
# failing step. Browser-test artifacts (SDP, getStats dumps, server log): tests/browser/out/,
# tests/platform/out/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
BROWSER_DIR="$ROOT/tests/browser"
PLATFORM_DIR="$ROOT/tests/platform"
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

# ffprobe (Debian's ffmpeg) reads the exported recordings in tests/recording_export.rs.
if command -v ffprobe >/dev/null 2>&1; then
  echo "ffprobe:  already installed"
else
  echo "ffprobe:  installing Debian's ffmpeg (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ffmpeg
  command -v ffprobe >/dev/null 2>&1 || die "apt-get installed ffmpeg but ffprobe is missing"
fi
echo "ffprobe:  $(ffprobe -version 2>/dev/null | head -n1)"

command -v node >/dev/null 2>&1 || die "node not found (node >= 20.19 is needed for the browser and platform tests)"
command -v npm >/dev/null 2>&1 || die "npm not found"
# 20.19: the oldest node @redocly/cli supports (playwright-core needs 18).
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
  || die "node >= 20.19 needed (@redocly/cli, playwright-core), found $(node --version)"
echo "node:     $(node --version), npm $(npm --version 2>/dev/null)"

command -v python3 >/dev/null 2>&1 || die "python3 not found (the Python webhook receiver example runs in the tests)"
echo "python:   $(python3 --version 2>&1)"

# npm packages: install when node_modules does not match package-lock.json.
for dir in "$BROWSER_DIR" "$PLATFORM_DIR"; do
  rel=${dir#"$ROOT/"}
  if (cd "$dir" && node -e '
    const lock = require("./package-lock.json").packages;
    for (const [p, v] of Object.entries(lock)) {
      if (!p) continue;
      let have;
      try { have = require("./" + p + "/package.json").version; } catch { process.exit(1); }
      if (have !== v.version) process.exit(1);
    }' 2>/dev/null); then
    echo "npm:      $rel/node_modules up to date"
  else
    echo "npm:      installing $rel packages (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done

# GStreamer interop (tests/interop_gstreamer.rs): Debian 12's GStreamer 1.22 with webrtcbin and
# libnice, and the webrtchttp plugin (whipsink, whepsrc) of gst-plugins-rs, built once from its
# crates.io source with the lock file kept in tests/interop/, and cached under target/interop/.
GST_WEBRTCHTTP_VERSION=0.10.8
INTEROP_DIR="$ROOT/target/interop"
GST_PLUGIN_DIR="$INTEROP_DIR/gst-plugins"
GST_APT=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice gstreamer1.0-libav
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libssl-dev pkg-config iproute2 util-linux)
missing=()
for p in "${GST_APT[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "gstreamer: installing ${missing[*]} (apt-get)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ -f "$GST_PLUGIN_DIR/libgstwebrtchttp.so" ]; then
  echo "gstreamer: webrtchttp $GST_WEBRTCHTTP_VERSION already built in ${GST_PLUGIN_DIR#"$ROOT/"}"
else
  echo "gstreamer: building gst-plugin-webrtchttp $GST_WEBRTCHTTP_VERSION from crates.io"
  fetch="$INTEROP_DIR/fetch"
  mkdir -p "$fetch/src"
  : >"$fetch/src/lib.rs"
  printf '[package]\nname = "fetch-gst-webrtchttp"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n[dependencies]\ngst-plugin-webrtchttp = "=%s"\n[workspace]\n' \
    "$GST_WEBRTCHTTP_VERSION" >"$fetch/Cargo.toml"
  (cd "$fetch" && cargo fetch)
  src=$(cd "$fetch" && cargo metadata --format-version 1 \
    | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "gst-plugin-webrtchttp"))')
  rm -rf "$INTEROP_DIR/gst-plugin-webrtchttp"
  cp -r "$(dirname "$src")" "$INTEROP_DIR/gst-plugin-webrtchttp"
  cp tests/interop/gst-plugin-webrtchttp.Cargo.lock "$INTEROP_DIR/gst-plugin-webrtchttp/Cargo.lock"
  (cd "$INTEROP_DIR/gst-plugin-webrtchttp" && cargo build --release --locked --lib --target-dir "$INTEROP_DIR/gst-target")
  mkdir -p "$GST_PLUGIN_DIR"
  cp "$INTEROP_DIR/gst-target/release/libgstwebrtchttp.so" "$GST_PLUGIN_DIR/"
  rm -rf "$INTEROP_DIR/gst-target" # ~450 MB of intermediates; the plugin is all we keep
fi
export GST_PLUGIN_PATH="$GST_PLUGIN_DIR"
gst-inspect-1.0 whipsink >/dev/null || die "GStreamer does not load whipsink from $GST_PLUGIN_DIR"
echo "gstreamer: $(gst-launch-1.0 --version | sed -n 2p), webrtchttp $GST_WEBRTCHTTP_VERSION"

# aiortc interop (tests/interop_aiortc.rs, and the aiortc viewer of the GStreamer cell): aiortc
# and its dependencies from PyPI, pinned in tests/interop/aiortc-requirements.txt, in a venv.
AIORTC_VENV="$INTEROP_DIR/aiortc-venv"
if ! "$AIORTC_VENV/bin/python" -c 'import aiortc, av' >/dev/null 2>&1 \
  || ! cmp -s tests/interop/aiortc-requirements.txt "$AIORTC_VENV/requirements.txt"; then
  echo "aiortc: installing tests/interop/aiortc-requirements.txt into ${AIORTC_VENV#"$ROOT/"} (pip)"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  fi
  rm -rf "$AIORTC_VENV"
  python3 -m venv "$AIORTC_VENV"
  "$AIORTC_VENV/bin/pip" install -q --disable-pip-version-check -r tests/interop/aiortc-requirements.txt
  cp tests/interop/aiortc-requirements.txt "$AIORTC_VENV/requirements.txt"
fi
export HAWKER_AIORTC_PYTHON="$AIORTC_VENV/bin/python"
echo "aiortc:   $("$HAWKER_AIORTC_PYTHON" -c 'import aiortc, av; print("aiortc", aiortc.__version__, "PyAV", av.__version__)')"

# ---------------------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

# ---------------------------------------------------------------------------------------------
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

# ---------------------------------------------------------------------------------------------
step "OpenAPI lint: redocly lint (redocly.yaml: recommended-strict + example checks)"
"$PLATFORM_DIR/node_modules/.bin/redocly" lint --config redocly.yaml

# ---------------------------------------------------------------------------------------------
step "OpenAPI client: openapi-typescript types, tsc over the generated-client code"
"$PLATFORM_DIR/node_modules/.bin/openapi-typescript" --redocly redocly.codegen.yaml
"$PLATFORM_DIR/node_modules/.bin/tsc" -p tests/platform/tsconfig.json

# ---------------------------------------------------------------------------------------------
step "SDK package: declarations current, npm pack, install, tsc --noEmit over examples/viewer"
SITE_DIR="$PLATFORM_DIR/out/site"
tests/platform/sdk_package.sh "$SITE_DIR"

# ---------------------------------------------------------------------------------------------
step "cargo test --release (all but the browser tests)"
cargo test --release --locked -- --skip browser_whip_whep_e2e --skip browser_frame_sync_and_shop \
  --skip browser_replay --skip browser_simulcast_layers

# ---------------------------------------------------------------------------------------------
step "platform e2e: generated client + examples/viewer + webhook receivers vs target/release/hawker"
cargo build --release --locked --bin hawker
node tests/platform/e2e.mjs --hawker "${CARGO_TARGET_DIR:-target}/release/hawker" --site "$SITE_DIR" --out "$PLATFORM_DIR/out"

# ---------------------------------------------------------------------------------------------
step "browser test: cargo test --release --test browser (headless Chromium, WHIP/WHEP)"
# With CI set, a missing browser dependency fails the test instead of skipping it.
cargo test --release --locked --test browser -- --nocapture

# ---------------------------------------------------------------------------------------------
step "browser test: cargo test --release --test browser_shop (studio + viewer pages, frame sync, buying)"
cargo test --release --locked --test browser_shop -- --nocapture

# ---------------------------------------------------------------------------------------------
step "browser test: cargo test --release --test browser_replay (live, then the replay frame-exact, seek; ~1 min)"
cargo test --release --locked --test browser_replay -- --nocapture

# In a network namespace the script creates (unshare, util-linux; tc and ip, iproute2: both
# installed above). About 2 minutes.
step "browser test: cargo test --release --test browser_simulcast (3 layers, quality caps, a shaped downlink)"
cargo test --release --locked --test browser_simulcast -- --nocapture

# ---------------------------------------------------------------------------------------------
# Last: it builds the crate a second time with test-only fault hooks (engine::shard::Fault),
# which must not be the binary the steps above run.
step "fault injection: cargo test --release --features fault-injection --test engine_faults --test crash_points"
cargo test --release --locked --features fault-injection --test engine_faults --test crash_points
cargo clippy --release --locked --features fault-injection --test engine_faults --test crash_points -- -D warnings

# ---------------------------------------------------------------------------------------------
# Each cargo-fuzz target for a short, bounded time on its committed seed corpus (new inputs go
# to a scratch corpus under fuzz/target). Long runs: docs/security.md.
step "fuzz: each target for ${FUZZ_SECONDS:-20} s (cargo-fuzz, nightly)"
if cargo +nightly --version >/dev/null 2>&1; then
  if ! cargo fuzz --version 2>/dev/null | grep -q ' 0.13.2'; then
    cargo install --locked cargo-fuzz --version 0.13.2
  fi
  for t in protocol clock stun sdp_offer datagram; do
    mkdir -p "fuzz/target/corpus/$t"
    (cd fuzz && cargo +nightly fuzz run -s none "$t" "target/corpus/$t" "corpus/$t" -- \
      -max_total_time="${FUZZ_SECONDS:-20}" -print_final_stats=1 2>&1 | tail -n 12)
  done
else
  echo "no nightly toolchain (rustup toolchain install nightly): the fuzz targets were NOT run"
fi

step "summary"
STEP_NAME=
printf 'all steps passed in %ds\n' $((SECONDS - START))
