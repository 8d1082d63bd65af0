#!/usr/bin/env bash
# The SDK as a platform installs it: checks web/sdk/ and builds a third-party site from it.
#   1. hawker.d.ts is what tsc generates from hawker.js's JSDoc (no drift);
#   2. the package's major version is the data-channel protocol version (hawker.js
#      PROTOCOL_VERSION and src/live/protocol.rs VERSION);
#   3. `npm pack` makes a tarball with hawker.js, hawker.d.ts, package.json, README.md;
#   4. the tarball installs into SITE (a copy of examples/viewer) and `tsc --noEmit` type-checks
#      the example against the installed package's declarations.
# usage: tests/platform/sdk_package.sh SITE_DIR   (SITE_DIR is created; tests/platform/e2e.mjs
# serves it). Needs tests/platform/node_modules (typescript).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$(pwd)
SITE=${1:?usage: tests/platform/sdk_package.sh SITE_DIR}
TSC="$ROOT/tests/platform/node_modules/.bin/tsc"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "-- declarations: tsc -p web/sdk (JSDoc -> hawker.d.ts) matches the committed file"
"$TSC" -p web/sdk/tsconfig.json --outDir "$TMP/dts"
if ! diff -u web/sdk/hawker.d.ts "$TMP/dts/hawker.d.ts"; then
  echo "web/sdk/hawker.d.ts is stale: regenerate it with tests/platform/node_modules/.bin/tsc -p web/sdk/tsconfig.json" >&2
  exit 1
fi

echo "-- version follows the data-channel protocol version"
pkg_version=$(node -p 'require("./web/sdk/package.json").version')
sdk_protocol=$(sed -n 's/^export const PROTOCOL_VERSION = \([0-9]*\);$/\1/p' web/sdk/hawker.js)
server_protocol=$(sed -n 's/^pub const VERSION: u32 = \([0-9]*\);$/\1/p' src/live/protocol.rs)
pkg_protocol=$(node -p 'require("./web/sdk/package.json").hawker.protocol')
echo "   package $pkg_version, hawker.js PROTOCOL_VERSION $sdk_protocol, server protocol $server_protocol"
[ -n "$sdk_protocol" ] && [ "$sdk_protocol" = "$server_protocol" ] && [ "$pkg_protocol" = "$server_protocol" ] \
  && [ "${pkg_version%%.*}" = "$server_protocol" ] \
  || { echo "the SDK package's major version must be the protocol version" >&2; exit 1; }

echo "-- npm pack"
(cd web/sdk && npm pack --silent --pack-destination "$TMP" >/dev/null)
tarball=$(ls "$TMP"/*.tgz)
files=$(tar -tzf "$tarball" | sort | tr '\n' ' ')
echo "   $(basename "$tarball"): $files"
[ "$files" = "package/README.md package/hawker.d.ts package/hawker.js package/package.json " ] \
  || { echo "unexpected package contents: $files" >&2; exit 1; }

echo "-- install the tarball into a third-party site ($SITE) and type-check examples/viewer"
rm -rf "$SITE"
mkdir -p "$SITE"
cp examples/viewer/index.html examples/viewer/viewer.js examples/viewer/tsconfig.json "$SITE/"
cp "$tarball" "$SITE/"
(cd "$SITE" && echo '{"name": "example-shop", "private": true, "type": "module"}' >package.json \
  && npm install --silent --no-audit --no-fund --offline "./$(basename "$tarball")")
cmp "$SITE/node_modules/@hawker/sdk/hawker.js" web/sdk/hawker.js
"$TSC" --noEmit -p "$SITE/tsconfig.json"
echo "   tsc --noEmit: examples/viewer type-checks against the installed @hawker/sdk"
