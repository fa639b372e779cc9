#!/bin/sh
# Builds this plugin into the component $1 with cargo, for wasm32-wasip2
# (`rustup target add wasm32-wasip2`). Exits 77 when cargo is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(realpath -m "$1")
command -v cargo >/dev/null || { echo "cargo is not installed: https://rustup.rs" >&2; exit 77; }
target=${CARGO_TARGET_DIR:-$here/target}
cargo build --quiet --locked --release --target wasm32-wasip2 \
    --manifest-path "$here/Cargo.toml" --target-dir "$target"
cp "$target/wasm32-wasip2/release/rust_admission.wasm" "$out"
