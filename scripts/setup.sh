#!/usr/bin/env bash
# Install what Lens needs on a Debian 12 machine, skipping what is already there (safe to re-run).
#   scripts/setup.sh                  everything below
#   scripts/setup.sh --native-only    only what `cargo build -p lens` needs (scripts/run.sh)
#   scripts/setup.sh --native-tests   that, plus what the native tests use: Mesa's Vulkan on the CPU
#                                     (wgpu), moto (a local S3), an OpenAPI validator, the openai client
#   scripts/setup.sh --browser-tests  what the wasm32, browser and edge tests use: Chromium, the wasm32
#                                     toolchain, wasm-bindgen-cli, Trunk, the e2e test's npm packages,
#                                     wrangler (the edge)
#                                     (scripts/test.sh runs this part while the native tests build)
# One line per step; "ok (present)" when nothing had to be done.
# Tools that cargo installs go to $LENS_TOOLS_DIR (default ~/.cache/lens-tools), outside the clone.
# wasm32: rustup's wasm32-unknown-unknown target when it is installed, otherwise Debian's rustc-web
# building std from source (../shared/TOOLCHAIN.md); scripts/wasm-cargo makes the same choice.
set -euo pipefail
cd "$(dirname "$0")/.."

native=true native_tests=true browser=true
case "${1:-}" in
  "") ;;
  --native-only) native_tests=false browser=false ;;
  --native-tests) browser=false ;;
  --browser-tests) native=false native_tests=false ;;
  -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "setup.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac
TOOLS="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

step() { printf '%-36s %s\n' "$1" "$2"; }
die() { printf '%-36s FAILED: %s\n' "$1" "$2" >&2; exit 1; }
rustup_wasm32() {
  command -v rustup >/dev/null 2>&1 &&
    rustup target list --installed 2>/dev/null | grep -x wasm32-unknown-unknown >/dev/null
}

# --- apt packages ----------------------------------------------------------------------------
packages=()
# gcc: the linker `cc` for host builds; curl: scripts/run.sh
if $native; then packages+=(pkg-config gcc curl); fi
# mesa + libvulkan: wgpu on lavapipe (CPU); python3-venv: moto's and the validator's venv.
if $native_tests; then packages+=(mesa-vulkan-drivers libvulkan1 python3-venv); fi
if $browser; then
  # chromium + chromium-driver: wasm tests in a browser.
  packages+=(chromium chromium-driver lld-19)
  # Node runs the wasm tests; any Node >= 18 will do (Debian 12 ships 18).
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  # Without rustup's wasm32 std: Debian's rustc 1.96 builds std for wasm32 from its source.
  rustup_wasm32 || packages+=(rustc-web cargo-web rust-web-src)
fi
missing=()
for p in "${packages[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null; then
    step "apt $p" "ok (present)"
  else
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get update" "(missing: ${missing[*]})"
  $SUDO apt-get update -qq
  for p in "${missing[@]}"; do
    step "apt $p" "installing"
  done
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- moto, the OpenAPI validator and the openai client (the native tests) --------------------------
# moto[server], a local S3-compatible server for the S3 tests (lens-store, native);
# openapi-spec-validator, which checks `lens openapi` against the OpenAPI 3.1 schema; and OpenAI's own
# Python client, which the chat tests drive `lens serve` with: in one venv at $TOOLS/moto (about 300 MB,
# a minute), linked into $TOOLS/bin, which scripts/test.sh puts on PATH (the client as
# $TOOLS/bin/lens-test-python).
moto_version=5.2.5
validator_version=0.9.0
openai_version=3.63.0
native_test_tools() {
  local name="moto $moto_version, validator $validator_version, openai $openai_version"
  if tools_installed; then
    step "$name" "ok (present in $TOOLS/bin)"
    return
  fi
  step "$name" "installing into $TOOLS/moto"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  rm -rf "$TOOLS/moto"
  python3 -m venv "$TOOLS/moto"
  "$TOOLS/moto/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version" \
    "openapi-spec-validator==$validator_version" "openai==$openai_version"
  mkdir -p "$TOOLS/bin"
  ln -sf "$TOOLS/moto/bin/moto_server" "$TOOLS/bin/moto_server"
  ln -sf "$TOOLS/moto/bin/openapi-spec-validator" "$TOOLS/bin/openapi-spec-validator"
  # A wrapper, not a link: Python finds its venv from the path it was started by.
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$TOOLS/moto/bin/python" >"$TOOLS/bin/lens-test-python"
  chmod +x "$TOOLS/bin/lens-test-python"
  tools_installed || die "$name" "install did not give those versions"
  step "$name" "ok (installed)"
}
tools_installed() {
  [ -x "$TOOLS/bin/moto_server" ] && [ -x "$TOOLS/bin/openapi-spec-validator" ] && [ -x "$TOOLS/bin/lens-test-python" ] &&
    [ "$("$TOOLS/moto/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"), m.version("openapi-spec-validator"), m.version("openai"))' 2>/dev/null)" = "$moto_version $validator_version $openai_version" ]
}

# --- Rust ------------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 ||
  die "cargo" "not found: install Rust with rustup (https://rustup.rs) first"
step "cargo" "ok (present: $(cargo --version))"

# --- the native tests: Vulkan on the CPU, moto, the OpenAPI validator ------------------------------
if $native_tests; then
  icd=""
  for f in /usr/share/vulkan/icd.d/lvp_icd*.json /etc/vulkan/icd.d/lvp_icd*.json; do
    if [ -f "$f" ]; then icd="$f"; break; fi
  done
  if [ -n "$icd" ]; then
    step "Vulkan (Mesa lavapipe)" "ok (present: $icd)"
  else
    step "Vulkan (Mesa lavapipe)" "no lavapipe ICD: the wgpu tests need a Vulkan driver"
  fi
  native_test_tools
fi
$browser || exit 0

# --- wasm32 ----------------------------------------------------------------------------------
if rustup_wasm32; then
  step "wasm32 toolchain" "ok (present: rustup target wasm32-unknown-unknown)"
else
  for t in rustc cargo rustdoc; do
    [ -x "/usr/bin/$t" ] || die "wasm32 toolchain" "/usr/bin/$t missing (apt rustc-web cargo-web)"
  done
  src="$(/usr/bin/rustc --print sysroot)/lib/rustlib/src/rust/library/std"
  [ -d "$src" ] || die "wasm32 toolchain" "no std source at $src (apt rust-web-src)"
  command -v wasm-ld-19 >/dev/null 2>&1 || die "wasm32 toolchain" "wasm-ld-19 missing (apt lld-19)"
  step "wasm32 toolchain" "ok (present: Debian $(/usr/bin/rustc --version | cut -d' ' -f1-2), build-std)"
fi
command -v node >/dev/null 2>&1 || die "node" "not found (Node.js runs the wasm tests)"
step "node" "ok (present: $(node --version))"

chromium_version=$(chromium --version 2>/dev/null | grep -Eo '[0-9]+\.[0-9.]+' | head -1 || true)
driver_version=$(chromedriver --version 2>/dev/null | grep -Eo '[0-9]+\.[0-9.]+' | head -1 || true)
[ -n "$driver_version" ] || die "chromedriver" "not found (apt chromium-driver)"
if [ "${chromium_version%%.*}" != "${driver_version%%.*}" ]; then
  step "chromium / chromedriver" "WARNING: versions differ ($chromium_version / $driver_version)"
else
  step "chromium / chromedriver" "ok (present: $chromium_version)"
fi

# --- wasm-bindgen-cli, exactly the wasm-bindgen version in Cargo.lock -------------------------
wb_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
[ -n "$wb_version" ] || die "wasm-bindgen-cli" "no wasm-bindgen in Cargo.lock"
installed() { [ -x "$TOOLS/bin/$1" ] && [ "$("$TOOLS/bin/$1" --version 2>/dev/null | awk '{print $2}')" = "$wb_version" ]; }
if installed wasm-bindgen && installed wasm-bindgen-test-runner; then
  step "wasm-bindgen-cli $wb_version" "ok (present in $TOOLS/bin)"
else
  step "wasm-bindgen-cli $wb_version" "installing into $TOOLS (about 4 min of CPU)"
  # Without --locked (with it resolution fails); in cargo's own temporary target directory. Optimised
  # lightly (opt-level 1, no debug info): it compiles in 3.7 CPU-min, and binds the 54 MB web worker
  # module as fast as an opt-level 3 build (1.0 s both).
  env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
    cargo install -q wasm-bindgen-cli --version "$wb_version" --root "$TOOLS"
  installed wasm-bindgen-test-runner || die "wasm-bindgen-cli $wb_version" "install did not give that version"
  step "wasm-bindgen-cli $wb_version" "ok (installed)"
fi

# --- Trunk (the browser app: `trunk serve` from the repository root) ---------------------------
# The real binary goes to $TOOLS/trunk-<version>; $TOOLS/bin/trunk is a small wrapper that sets what the
# wasm32 build needs (the getrandom cfg and simd128, as scripts/wasm-cargo; with Debian's toolchain also
# build-std, its rustc and wasm-ld-19) and shares target/wasm with scripts/wasm-cargo.
trunk_version=0.22.1
trunk_real="$TOOLS/trunk-$trunk_version/bin/trunk"
if [ -x "$trunk_real" ] && "$trunk_real" --version 2>/dev/null | grep -q " $trunk_version"; then
  step "trunk $trunk_version" "ok (present in $TOOLS/trunk-$trunk_version)"
elif [ -x "$TOOLS/bin/trunk" ] && [ "$(head -c 4 "$TOOLS/bin/trunk" | tail -c 3)" = ELF ] &&
  "$TOOLS/bin/trunk" --version 2>/dev/null | grep -q " $trunk_version"; then
  mkdir -p "$(dirname "$trunk_real")"
  mv "$TOOLS/bin/trunk" "$trunk_real"
  step "trunk $trunk_version" "ok (moved to $TOOLS/trunk-$trunk_version)"
else
  step "trunk $trunk_version" "installing into $TOOLS (about 6 min of CPU)"
  # 0.22 asks for rustc 1.96.1; it builds with older ones. rustls: no OpenSSL headers needed.
  # Trunk's own release profile (fat LTO, one codegen unit) took 17 CPU-min, mostly on one core; what
  # Trunk does here (run cargo and wasm-bindgen, copy and hash a few files) is as fast unoptimised:
  # `trunk build --release` of the app took 3.8 s with this build and 4.4 s with the optimised one.
  env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install -q trunk --version "$trunk_version" --locked --ignore-rust-version \
    --no-default-features --features rustls --root "$TOOLS/trunk-$trunk_version"
  [ -x "$trunk_real" ] || die "trunk $trunk_version" "install did not give $trunk_real"
  step "trunk $trunk_version" "ok (installed)"
fi
mkdir -p "$TOOLS/bin"
{
  echo '#!/usr/bin/env bash'
  echo "# Written by scripts/setup.sh: Trunk $trunk_version with the wasm32 settings of scripts/wasm-cargo."
  echo 'set -euo pipefail'
  echo 'export TRUNK_SKIP_VERSION_CHECK=true'
  echo '# Shares the wasm32 build with scripts/wasm-cargo (same target directory rule) from the repository root.'
  echo '[ ! -f Trunk.toml ] || export CARGO_TARGET_DIR="${LENS_WASM_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/wasm}"'
  echo "export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS='--cfg getrandom_backend=\"wasm_js\" -C target-feature=+simd128'"
  if ! rustup_wasm32; then
    echo '# Debian rustc 1.96 building std for wasm32 (no rustup target here): its cargo first on PATH.'
    echo 'export PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort'
    echo 'export CARGO_BUILD_RUSTC=/usr/bin/rustc CARGO_BUILD_RUSTDOC=/usr/bin/rustdoc'
    echo 'export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-19'
  fi
  echo "exec \"$trunk_real\" \"\$@\""
} >"$TOOLS/bin/trunk.tmp"
chmod +x "$TOOLS/bin/trunk.tmp"
mv "$TOOLS/bin/trunk.tmp" "$TOOLS/bin/trunk"
step "trunk wrapper" "ok ($TOOLS/bin/trunk)"

# --- the edge: wrangler (workerd) in edge/node_modules ------------------------------------------------
# wrangler 4.86.0 is the last that runs on Node 20 (4.88 asks for 22); Debian 12's Node is 18, so below 20
# Node 22 comes from npm's `node` package (the binary ships inside it), first on PATH via $TOOLS/bin.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ] && [ ! -x "$TOOLS/bin/node" ]; then
  npm install --prefix "$TOOLS/node22" --no-audit --no-fund --loglevel=error node@22 >/dev/null ||
    die "node 22" "npm install node@22 failed"
  mkdir -p "$TOOLS/bin"
  ln -sf "$TOOLS/node22/node_modules/node/bin/node" "$TOOLS/bin/node"
  step "node 22 (for wrangler)" "ok (installed in $TOOLS/node22)"
fi
want=$(node -p 'require("./edge/package.json").dependencies.wrangler')
have=$(node -p 'require("./edge/node_modules/wrangler/package.json").version' 2>/dev/null || true)
if [ "$want" = "$have" ]; then
  step "edge npm packages (wrangler)" "ok (present)"
else
  (cd edge && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "edge npm packages" "npm ci failed"
  step "edge npm packages (wrangler)" "ok (installed $want)"
fi

# --- the browser app's end-to-end test: playwright-core driving /usr/bin/chromium -----------------
if [ -f web/e2e/package-lock.json ]; then
  want=$(node -p 'require("./web/e2e/package.json").dependencies["playwright-core"]')
  have=$(node -p 'require("./web/e2e/node_modules/playwright-core/package.json").version' 2>/dev/null || true)
  if [ "$want" = "$have" ]; then
    step "web/e2e npm packages" "ok (present)"
  else
    (cd web/e2e && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "web/e2e npm packages" "npm ci failed"
    step "web/e2e npm packages" "ok (installed)"
  fi
fi
