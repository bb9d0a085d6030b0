#!/usr/bin/env bash
# Every Lens test, on a fresh machine or a warm one (.ci/run calls exactly this):
#   1. set-up of what the native tests need (scripts/setup.sh --native-tests); the browser side's set-up
#      (Chromium, the wasm32 toolchain, wasm-bindgen-cli, Trunk) runs in the background meanwhile
#   2. native tests, one build for every backend: burn-ndarray, burn-wgpu on Mesa lavapipe when a Vulkan
#      driver is present, and the cuda feature compiled and linked (it runs only where a GPU is lent;
#      LENS_SKIP_CUDA=1 leaves it out); release, so the benchmarks share the build
#   3. checks of the code and the API: no module imports from one that imports it back; the OpenAPI
#      document validates as OpenAPI 3.1; the main job (scripts/run.sh) runs once
#   4. wasm32: lens-core and lens-models tests under Node, then in headless Chromium
#      (there with lens-models' int8 products on relaxed SIMD);
#      the browser app: lens-web's wasm tests in Chromium, `trunk build --release`, the end-to-end test;
#      the edge: the Worker built and run by `wrangler dev` against `lens serve` (scripts/test-edge.sh)
#   5. smoke runs of the benchmarks (CLIP, BLIP, LLaMA/LLaVA, chat load, index, serve load, the soak with
#      kill -9, the browser benchmark)
# Stops at the first failure; prints each step's time and a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
export LENS_TOOLS_DIR="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}"
export PATH="$LENS_TOOLS_DIR/bin:$PATH"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" # quiets Mesa
work=$(mktemp -d)
# On the way out, the background set-up (if still running) goes too, with its compilers.
trap 'if [ -n "${browser_setup:-}" ]; then kill -- -"$browser_setup" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
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

step "set-up (native tests)" scripts/setup.sh --native-tests
# The browser side's set-up is mostly compiling Trunk and wasm-bindgen-cli: it runs while the native
# tests build and run (the two cores are rarely both busy all along), and its log is shown after them.
setsid scripts/setup.sh --browser-tests >"$work/setup-browser.log" 2>&1 &
browser_setup=$!

# --- native: one build for every backend ----------------------------------------------------------
# The features are the same for every cargo command below (tests, benchmarks), so each crate is
# compiled once. native/tests/cli.rs has `#[cfg(feature = "wgpu")]` parity tests (`--device wgpu`),
# which need a Vulkan ICD (apt mesa-vulkan-drivers: lvp_icd.*.json) and the loader (libvulkan1).
vulkan_present() {
  [ -n "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ] && return 0
  ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null || return 1
  local f
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do
    [ -f "$f" ] && return 0
  done
  return 1
}
features=()
if [ "${LENS_SKIP_CUDA:-0}" != 1 ]; then features+=(lens/cuda); else skip "cuda feature builds and links" "LENS_SKIP_CUDA=1"; fi
if vulkan_present; then features+=(lens/wgpu); else skip "lens tests on wgpu (Vulkan)" "no Vulkan driver"; fi
feature_args=()
if [ ${#features[@]} -gt 0 ]; then feature_args=(--features "$(IFS=,; echo "${features[*]}")"); fi
step "native tests (ndarray${features[*]:+, ${features[*]#lens/}})" cargo test --release --workspace "${feature_args[@]}"
lens_bin="${CARGO_TARGET_DIR:-target}/release/lens"

# --- checks of the code and the API -----------------------------------------------------------------
step "no module imports from one that imports it back" scripts/check-module-cycles
validate_openapi() {
  "$lens_bin" openapi >"$work/openapi.json"
  openapi-spec-validator "$work/openapi.json"
}
step "the OpenAPI document validates (3.1)" validate_openapi
run_once() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # No hub here: the pull fails at once and the demonstration says it uses the fixture model.
  LENS_BIN="$lens_bin" LENS_RUN_ONCE=1 LENS_DATA="$work/run-data" LENS_LISTEN="127.0.0.1:$port" \
    HF_ENDPOINT=http://127.0.0.1:1 LENS_HOME="$work/lens-home" scripts/run.sh
}
step "the main job (scripts/run.sh, once)" run_once

# `wait` must run in this shell (a step runs in a pipeline's subshell, which cannot wait for it).
waited_from=$(date +%s)
browser_setup_rc=0
wait "$browser_setup" || browser_setup_rc=$?
browser_setup_waited=$(($(date +%s) - waited_from))
show_browser_setup() {
  cat "$work/setup-browser.log"
  return "$browser_setup_rc"
}
step "set-up (browser tests; in the background, then waited ${browser_setup_waited} s)" show_browser_setup

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
# By default lens-core's tests, then lens-models' integration binary: lens-models' unit tests are native
# only (none is a wasm test), so a wasm32 build of them would run nothing. $LENS_MODELS_FEATURES: features
# of that build (the Chromium run takes `relaxed-simd`: the int8 kernel the browser app's relaxed worker runs).
wasm_test() {
  if [ -n "${WASM_TEST_PACKAGES:-}" ]; then
    scripts/wasm-cargo test --release $WASM_TEST_PACKAGES "$@"
    return
  fi
  scripts/wasm-cargo test --release -p lens-core "$@" &&
    scripts/wasm-cargo test --release -p lens-models --test integration \
      ${LENS_MODELS_FEATURES:+--features "$LENS_MODELS_FEATURES"} "$@"
}
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
# lens-index for wasm32 is built (and its exact scans run) by the browser app, its tests and the edge below;
# a separate build step of it only compiled its own copy of lens-core (~1 min of a cold run).
step "wasm32 tests in Node" wasm_test
# Node 20 has no relaxed SIMD without a flag; Chromium has (114+): the int8 parity and kernel tests run
# on the simd128 kernel in Node and on the relaxed one here.
relaxed_in_chromium() { LENS_MODELS_FEATURES=relaxed-simd wasm_test_in_chromium; }
step "wasm32 tests in headless Chromium (int8 on relaxed SIMD)" relaxed_in_chromium

# --- the browser app (web/): its wasm side in Chromium, the Trunk build, the end-to-end test -----------
web_wasm_tests() { WASM_TEST_PACKAGES="-p lens-web" wasm_test_in_chromium; }
step "web: lens-web wasm tests in headless Chromium" web_wasm_tests
step "web: trunk build --release" trunk build --release
web_e2e() {
  # The `lens` binary the native tests built (lens serve for the sync part); .ci/run moves the target dir.
  local lens="$lens_bin"
  local artifact=models/fixtures/clip-tiny-quickgelu.int8.lens
  if [ ! -f "$artifact" ]; then
    artifact="$work/clip-tiny.lens"
    "$lens" models quantize --model models/fixtures/clip-tiny-quickgelu --out "$artifact"
  fi
  # Screenshots go to a temporary folder (web/docs/screenshot.png is written by a run by hand).
  node web/e2e/e2e.mjs --dist dist --artifact "$artifact" --out "$work/screenshots" --lens "$lens"
}
step "web: end-to-end in headless Chromium" web_e2e

# --- the edge (edge/): the Worker built for wasm32, run by wrangler dev (workerd) against lens serve ----
step "edge: Worker build and wrangler dev end-to-end" env LENS_BIN="$lens_bin" scripts/test-edge.sh

# --- benchmark smoke runs: each bench works end to end, in seconds ---------------------------------
# The same workspace and features as the tests: nothing is compiled again but the bench binaries.
# Built in one cargo command first: the bench binaries (each links every backend, ~2.5 min) compile side
# by side on both cores instead of one after the other.
step "benchmarks build" cargo bench --workspace "${feature_args[@]}" --no-run
bench() { cargo bench --workspace "${feature_args[@]}" --bench "$1" -- --smoke; }
step "bench smoke run (lens clip)" bench clip
step "bench smoke run (lens blip)" bench blip
step "bench smoke run (lens-index)" bench index
step "bench smoke run (lens serve load)" bench serve_load
step "bench smoke run (lens serve soak, kill -9)" bench soak
step "bench smoke run (lens llama, llava)" bench llama
step "bench smoke run (lens chat load)" bench chat_load
step "bench smoke run (browser, headless Chromium)" web/bench/run.sh --smoke

summary
