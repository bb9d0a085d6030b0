#!/usr/bin/env bash
# The edge's end-to-end test: builds the Worker (scripts/build-edge.sh), then runs edge/test/edge.mjs — a
# real `lens serve`, the Worker in `wrangler dev` (workerd), local R2 and KV seeded by wrangler.
#   scripts/test-edge.sh [--full]
# --full (opt-in, about 2 minutes more): also a full-size random ViT-B/32 text artifact, for the memory
# bound (≤ 100 MiB of wasm memory after 50 queries) and the cold start.
# The `lens` binary: $LENS_BIN, default $CARGO_TARGET_DIR/release/lens (built by the native tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export LENS_TOOLS_DIR="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}"
export PATH="$LENS_TOOLS_DIR/bin:$PATH"
lens="${LENS_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/lens}"
[ -x "$lens" ] || { echo "test-edge.sh: no lens binary at $lens (cargo build --release -p lens)" >&2; exit 1; }
[ -x edge/node_modules/.bin/wrangler ] ||
  { echo "test-edge.sh: wrangler is not installed (scripts/setup.sh --browser-tests)" >&2; exit 1; }
scripts/build-edge.sh
args=(--lens "$lens")
if [ "${1:-}" = "--full" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cargo run --release -p lens-edge --features full-size-example --example random_text_artifact -- "$work/full-text.lens"
  args+=(--full --full-artifact "$work/full-text.lens")
fi
node edge/test/edge.mjs "${args[@]}"
