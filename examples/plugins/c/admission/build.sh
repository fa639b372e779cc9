#!/bin/sh
# Builds c-admission into a warden plugin component: ./build.sh OUT.wasm
#
# Needs, on PATH (or named by the variables in brackets):
#   clang with the wasm32-wasi target and wasi-libc    [CLANG]
#     (Debian 12: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)
#   wit-bindgen 0.63.0, from crates.io                 [WIT_BINDGEN]
#     (cargo install --locked wit-bindgen-cli --version 0.63.0 --no-default-features --features c)
#   wasm-component-ld 0.5.31, from crates.io           [WASM_COMPONENT_LD]
#     (cargo install --locked wasm-component-ld --version 0.5.31)
#   and wasm-ld (Debian's lld), which wasm-component-ld runs.
#
# A missing tool exits 77, which warden's tests take as "skip".
#
# Every path is resolved from this script's directory, so it runs from any
# directory; OUT.wasm is relative to the caller's. The bindings are
# generated into a temporary directory, removed on exit: they are never
# committed.
set -eu

world=admission-plugin
source=admission.c

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUT.wasm" >&2
    exit 2
fi
out=$1
mkdir -p -- "$(dirname -- "$out")"

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
wit=$here/../../../../wit

CLANG=${CLANG:-clang}
WIT_BINDGEN=${WIT_BINDGEN:-wit-bindgen}
WASM_COMPONENT_LD=${WASM_COMPONENT_LD:-wasm-component-ld}

# clang takes another linker only by its absolute path.
linker=$(command -v "$WASM_COMPONENT_LD") || {
    echo "$0: $WASM_COMPONENT_LD not found; cargo install --locked wasm-component-ld --version 0.5.31" >&2
    exit 77
}
command -v "$WIT_BINDGEN" >/dev/null || {
    echo "$0: $WIT_BINDGEN not found; cargo install --locked wit-bindgen-cli --version 0.63.0 --no-default-features --features c" >&2
    exit 77
}
command -v "$CLANG" >/dev/null || {
    echo "$0: $CLANG not found; apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32" >&2
    exit 77
}

gen=$(mktemp -d "${TMPDIR:-/tmp}/warden-c-plugin.XXXXXX")
trap 'rm -rf "$gen"' EXIT
trap 'exit 130' INT TERM

# admission_plugin.{h,c} and admission_plugin_component_type.o: the
# declarations, the canonical ABI glue, and the world's type, which
# wasm-component-ld reads to wrap the module into a component.
"$WIT_BINDGEN" c "$wit" --world "$world" --out-dir "$gen"

stem=$(echo "$world" | tr - _)

# A reactor (a library: no main, no _start), optimised, without DWARF but
# with function names for backtraces. wasm-component-ld links it with
# wasm-ld, then adapts its WASI preview1 imports to WASI 0.2 with the
# adapter it embeds and wraps it into a component; --validate-component
# checks the result.
"$CLANG" --target=wasm32-wasi -mexec-model=reactor \
    -O2 -Wall -Wextra \
    -fuse-ld="$linker" -Wl,--strip-debug -Wl,--validate-component=true \
    -I "$gen" \
    -o "$out" \
    "$here/$source" "$gen/$stem.c" "$gen/${stem}_component_type.o"
