#!/usr/bin/env bash
# Every Lens test, on a fresh machine or a warm one (.ci/run calls exactly this):
#   1. set-up (scripts/setup.sh: apt packages, wasm32 toolchain, wasm-bindgen-cli)
#   2. native tests on burn-ndarray (release: one burn build shared with the benchmark)
#   3. the `lens` tests again with the wgpu feature, when a Vulkan driver is present (Mesa lavapipe)
#   4. wasm32: lens-index builds; lens-core and lens-models tests under Node, then in headless Chromium;
#      the browser app: lens-web's wasm tests in Chromium, `trunk build --release`, the end-to-end test
#   5. the cuda feature builds and links (it runs only where a GPU is lent; LENS_SKIP_CUDA=1 skips)
#   6. smoke runs of the benchmarks (CLIP, BLIP, index, serve load, the browser benchmark)
# Stops at the first failure; prints each step's time and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
export LENS_TOOLS_DIR="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}"
export PATH="$LENS_TOOLS_DIR/bin:$PATH"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" # quiets Mesa
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$work/log"
touch "$log"
timings=()
start_all=$(date +%s)

summary() {
  local passed failed
  passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
  failed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s += $6} END {print s + 0}')
  printf '\n=== timings ===\n'
  printf '%s\n' "${timings[@]}"
  printf '%-46s %5d s\n' "total" $(($(date +%s) - start_all))
  echo "lens: $passed tests passed, $failed failed (all runs counted)"
}

# step NAME COMMAND...: header, the command's output (also kept for the summary), its elapsed time.
step() {
  local name="$1" rc=0 t0 dt
  shift
  printf '\n=== %s ===\n' "$name"
  t0=$(date +%s)
  "$@" 2>&1 | tee -a "$log" || rc=$?
  dt=$(($(date +%s) - t0))
  timings+=("$(printf '%-46s %5d s' "$name" "$dt")$([ "$rc" -eq 0 ] || echo "  FAILED (exit $rc)")")
  if [ "$rc" -ne 0 ]; then
    summary
    printf '\n=== FAILED: %s (exit %d after %d s) ===\n' "$name" "$rc" "$dt"
    exit "$rc"
  fi
  printf '=== %s: ok, %d s ===\n' "$name" "$dt"
}
skip() { timings+=("$(printf '%-46s %s' "$1" "skipped: $2")"); printf '\n=== %s: skipped (%s) ===\n' "$1" "$2"; }

step "set-up" scripts/setup.sh
step "native tests (ndarray)" cargo test --release --workspace

# --- wgpu on Mesa lavapipe -------------------------------------------------------------------------
# native/tests/cli.rs has a `#[cfg(feature = "wgpu")]` parity test (`lens embed --device wgpu`).
# Needs a Vulkan ICD (apt mesa-vulkan-drivers: lvp_icd.*.json) and the loader (libvulkan1).
vulkan_present() {
  [ -n "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ] && return 0
  ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null || return 1
  local f
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -f "$f" ] && return 0
  done
  return 1
}
if vulkan_present; then
  step "lens tests on wgpu (Vulkan)" cargo test --release -p lens --features wgpu
else
  skip "lens tests on wgpu (Vulkan)" "no Vulkan driver"
fi

# --- wasm32: the same tests under Node, then in headless Chromium -------------------------------
# Test binaries are run by wasm-bindgen-test-runner. With no `wasm_bindgen_test_configure!` in a test,
# it uses Node; WASM_BINDGEN_USE_BROWSER (any value) makes it use a browser through WebDriver instead.
# The runner itself adds headless, no-sandbox, disable-dev-shm-usage to goog:chromeOptions; the rest
# comes from the JSON file named by WASM_BINDGEN_TEST_WEBDRIVER_JSON (default ./webdriver.json, which
# would be each crate's directory). WASM_BINDGEN_TEST_TIMEOUT bounds a whole test binary in the
# browser (default 20 s); Node has no limit.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"
export WASM_BINDGEN_TEST_DRIVER_TIMEOUT="${WASM_BINDGEN_TEST_DRIVER_TIMEOUT:-30}" # chromedriver start
wasm_test() { scripts/wasm-cargo test --release ${WASM_TEST_PACKAGES:--p lens-core -p lens-models} "$@"; }
wasm_test_in_chromium() {
  local chromium binary=""
  chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
  [ -z "$chromium" ] || binary="\"binary\": \"$chromium\","
  cat >"$work/webdriver.json" <<EOF
{
  "goog:chromeOptions": {
    $binary
    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run"]
  }
}
EOF
  # CHROMEDRIVER: the runner would otherwise take the first of geckodriver, safaridriver,
  # chromedriver, msedgedriver that it finds on PATH.
  CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}" \
    WASM_BINDGEN_USE_BROWSER=1 WASM_BINDGEN_TEST_WEBDRIVER_JSON="$work/webdriver.json" wasm_test "$@"
}
step "lens-index builds for wasm32 (exact scans)" scripts/wasm-cargo build --release -p lens-index
step "wasm32 tests in Node" wasm_test
step "wasm32 tests in headless Chromium" wasm_test_in_chromium

# --- the browser app (web/): its wasm side in Chromium, the Trunk build, the end-to-end test -----------
web_wasm_tests() { WASM_TEST_PACKAGES="-p lens-web" wasm_test_in_chromium; }
step "web: lens-web wasm tests in headless Chromium" web_wasm_tests
step "web: trunk build --release" trunk build --release
web_e2e() {
  # The `lens` binary the native tests built (lens serve for the sync part); .ci/run moves the target dir.
  local lens="${CARGO_TARGET_DIR:-target}/release/lens"
  local artifact=models/fixtures/clip-tiny-quickgelu.int8.lens
  if [ ! -f "$artifact" ]; then
    artifact="$work/clip-tiny.lens"
    "$lens" models quantize --model models/fixtures/clip-tiny-quickgelu --out "$artifact"
  fi
  # Screenshots go to a temporary folder (web/docs/screenshot.png is written by a run by hand).
  node web/e2e/e2e.mjs --dist dist --artifact "$artifact" --out "$work/screenshots" --lens "$lens"
}
step "web: end-to-end in headless Chromium" web_e2e

# --- CUDA: build and link only (no GPU here) -------------------------------------------------------
if [ "${LENS_SKIP_CUDA:-0}" != 1 ]; then
  step "cuda feature builds and links" cargo build --release -p lens --features cuda
else
  skip "cuda feature builds and links" "LENS_SKIP_CUDA=1"
fi

# --- benchmark smoke runs: each bench works end to end, in seconds ---------------------------------
step "bench smoke run (lens clip)" cargo bench -p lens --bench clip -- --smoke
step "bench smoke run (lens blip)" cargo bench -p lens --bench blip -- --smoke
step "bench smoke run (lens-index)" cargo bench -p lens-index --bench index -- --smoke
step "bench smoke run (lens serve load)" cargo bench -p lens --bench serve_load -- --smoke
step "bench smoke run (browser, headless Chromium)" web/bench/run.sh --smoke

summary
