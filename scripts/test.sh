#!/usr/bin/env bash
# Every Lens test, on a fresh machine or a warm one (.ci/run calls exactly this):
#   1. set-up (scripts/setup.sh: apt packages, wasm32 toolchain, wasm-bindgen-cli)
#   2. native tests, burn-ndarray (release: one burn build shared with the bench)
#   3. the CLI tests again on burn-wgpu, when a Vulkan driver is present (Mesa lavapipe on CPUs)
#   4. lens-models' wasm32 tests under Node, then in headless Chromium
#   5. the cuda feature builds and links (it runs only where a GPU is lent; LENS_SKIP_CUDA=1 skips)
#   6. the CLIP benchmark's smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
export LENS_TOOLS_DIR="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}"
export PATH="$LENS_TOOLS_DIR/bin:$PATH"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" # quiets Mesa
log=$(mktemp)
trap 'rm -f "$log"' EXIT
timings=()
start_all=$(date +%s)

step() {
  local name="$1"
  shift
  printf '\n=== %s ===\n' "$name"
  local t0
  t0=$(date +%s)
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  local dt=$(($(date +%s) - t0))
  timings+=("$(printf '%-44s %4d s' "$name" "$dt")")
  if [ "$rc" -ne 0 ]; then
    printf '\n=== FAILED: %s (exit %d after %d s) ===\n' "$name" "$rc" "$dt"
    exit "$rc"
  fi
}

step "set-up" scripts/setup.sh
step "native tests (ndarray)" cargo test --release --workspace

if ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  step "CLI tests on wgpu (Vulkan)" cargo test --release -p lens --features wgpu --test cli
else
  timings+=("$(printf '%-44s %s' "CLI tests on wgpu" "skipped: no Vulkan driver")")
fi

wasm_test() {
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner WASM_BINDGEN_TEST_TIMEOUT=300 \
    scripts/wasm-cargo test --release -p lens-models "$@"
}
step "wasm32 build (lens-core, lens-models)" scripts/wasm-cargo build --release -p lens-core -p lens-models
step "wasm32 tests in Node" wasm_test
wasm_test_in_browser() { WASM_BINDGEN_USE_BROWSER=1 wasm_test "$@"; }
step "wasm32 tests in headless Chromium" wasm_test_in_browser

if [ "${LENS_SKIP_CUDA:-0}" != 1 ]; then
  step "cuda feature builds and links" cargo build --release -p lens --features cuda
fi
step "bench smoke run" cargo bench -p lens --bench clip -- --smoke

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
printf '\n=== timings ===\n'
printf '%s\n' "${timings[@]}"
printf '%-44s %4d s\n' "total" $(($(date +%s) - start_all))
echo "lens: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
