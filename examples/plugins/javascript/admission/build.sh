#!/bin/sh
# Builds js-admission into a warden plugin component: build.sh OUT.wasm
#
# Works from any directory: paths are resolved from this script's own. Installs
# componentize-js (pinned in package-lock.json) with `npm ci` on first use.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi
out=$1
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
contract=$here/../../../../wit

# Node.js 20 or later, which the examples were proven with; without it the
# script exits 77, which warden's tests take as "skip".
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || major=0
if [ "$major" -lt 20 ] || ! command -v npm >/dev/null; then
    echo "$0: componentize-js needs Node.js 20 or later, and npm" >&2
    exit 77
fi

if [ ! -d "$here/node_modules" ]; then
    (cd "$here" && npm ci --no-audit --no-fund)
fi

# The world this plugin is built against (wit/world.wit) adds wasi:filesystem
# to warden's admission-plugin world; put warden's contract beside the WASI
# packages it depends on, in a scratch copy.
wit=$(mktemp -d)
trap 'rm -rf "$wit"' EXIT
trap 'exit 130' INT TERM
cp "$here/wit/world.wit" "$wit/"
mkdir -p "$wit/deps/warden-policy"
cp "$contract/policy.wit" "$wit/deps/warden-policy/"
# The WASI packages, at the version the engine imports, as jco (installed
# with componentize-js) carries them.
wasi=$here/node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12
for package in wasi-clocks wasi-filesystem wasi-io; do
    cp -R "$wasi/$package" "$wit/deps/"
done

# --disable http --disable fetch-event: without them the component imports
# wasi:http, which warden does not provide, and is refused at load.
"$here/node_modules/.bin/componentize-js" \
    --wit "$wit" \
    --world-name js-admission \
    --disable http --disable fetch-event \
    --out "$out" \
    "$here/admission.js"
