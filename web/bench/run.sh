#!/usr/bin/env bash
# The browser benchmark in headless Chromium: web/bench/run.sh [--smoke] [--relaxed-simd] [extra cargo test args]
# Prints the tables (model load, image and text embedding for the int8 and fp32 CLIP, local search).
# --smoke: the tiny fixture CLIP, one iteration, 1k vectors (seconds; CI).
# --relaxed-simd: the int8 products on relaxed SIMD (the app's worker where the browser has it).
# Needs: scripts/wasm-cargo's toolchain, wasm-bindgen-test-runner (~/.cache/lens-tools/bin or PATH),
# chromium and chromedriver (apt chromium chromium-driver).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
features=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) features+=(--features smoke) ;;
    --relaxed-simd) features+=(--features relaxed-simd) ;;
    *) break ;;
  esac
  shift
done
export PATH="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}/bin:$PATH"
chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
binary=""
[ -z "$chromium" ] || binary="\"binary\": \"$chromium\","
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The runner adds headless, no-sandbox and disable-dev-shm-usage itself; the rest comes from here.
cat >"$work/webdriver.json" <<JSON
{
  "goog:chromeOptions": {
    $binary
    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run"]
  }
}
JSON
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export WASM_BINDGEN_USE_BROWSER=1
export WASM_BINDGEN_TEST_WEBDRIVER_JSON="$work/webdriver.json"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
# One test binary may take minutes at full size (the fp32 model is slow); the runner's default is 20 s.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-1800}"
export WASM_BINDGEN_TEST_DRIVER_TIMEOUT="${WASM_BINDGEN_TEST_DRIVER_TIMEOUT:-30}"
exec scripts/wasm-cargo test --release -p lens-bench-browser "${features[@]}" "$@" -- --nocapture
