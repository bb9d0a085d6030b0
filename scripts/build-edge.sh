#!/usr/bin/env bash
# Builds the edge Worker into edge/build/ (what wrangler.toml's `main`, edge/shim.mjs, imports):
#   1. lens-edge as a cdylib for wasm32 (scripts/wasm-cargo: the browser app's flags and target directory);
#   2. wasm-bindgen's `module` output with the reset-state function and the abort handler, as workers-rs'
#      own worker-build makes it (a panic traps the instance; the shim then starts a fresh one);
#   3. `import source` (a source-phase import wrangler's bundler does not take) as a plain import of the
#      compiled module, as worker-build does.
# No weights: the model is read from R2 at run time. Needs wasm-bindgen (scripts/setup.sh --browser-tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export LENS_TOOLS_DIR="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}"
export PATH="$LENS_TOOLS_DIR/bin:$PATH"
# The cdylib is asked for here only (edge/Cargo.toml: natively the crate is an rlib).
scripts/wasm-cargo rustc --release -p lens-edge --lib --crate-type cdylib
target="${LENS_WASM_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/wasm}"
rm -rf edge/build
wasm-bindgen --target module --experimental-reset-state-function --force-enable-abort-handler --no-typescript \
  --out-dir edge/build --out-name index "$target/wasm32-unknown-unknown/release/lens_edge.wasm"
sed -i 's|^import source wasmModule from "./index_bg.wasm";|import wasmModule from "./index_bg.wasm";|' edge/build/index.js
grep -q '^import wasmModule from "./index_bg.wasm";' edge/build/index.js ||
  { echo "build-edge.sh: wasm-bindgen's output no longer imports the module as expected" >&2; exit 1; }
printf 'edge/build: %s bytes of wasm\n' "$(stat -c %s edge/build/index_bg.wasm)"
