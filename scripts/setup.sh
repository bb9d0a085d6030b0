#!/usr/bin/env bash
# Install what Lens needs on a Debian 12 machine, skipping what is already there.
#   scripts/setup.sh               everything: apt packages, the wasm32 toolchain, wasm-bindgen-cli
#   scripts/setup.sh --native-only only what `cargo build -p lens` needs
# Tools that cargo installs go to $LENS_TOOLS_DIR (default ~/.cache/lens-tools), outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."

native_only=false
[ "${1:-}" = "--native-only" ] && native_only=true
TOOLS="${LENS_TOOLS_DIR:-$HOME/.cache/lens-tools}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

step() { printf '%-34s %s\n' "$1" "$2"; }

# --- apt packages ------------------------------------------------------------------------------
packages=(pkg-config gcc)
if ! $native_only; then
  # chromium + chromium-driver: browser tests; mesa + libvulkan: wgpu on lavapipe without a GPU.
  packages+=(chromium chromium-driver mesa-vulkan-drivers libvulkan1)
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    # No rustup wasm32 std here: Debian's compiler builds std for wasm32 from its source (TOOLCHAIN.md).
    packages+=(rustc-web cargo-web rust-web-src lld-19)
  fi
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  step "apt packages" "ok (present)"
else
  step "apt packages" "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
step "cargo" "$(cargo --version)"
$native_only && exit 0

# --- wasm32 ------------------------------------------------------------------------------------
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  step "wasm32 toolchain" "ok (rustup target)"
else
  step "wasm32 toolchain" "ok (Debian $(/usr/bin/rustc --version))"
fi
command -v node >/dev/null || { echo "node not found (Node.js runs the wasm tests)" >&2; exit 1; }
step "node" "$(node --version)"

# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
wb_version=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
if [ -x "$TOOLS/bin/wasm-bindgen" ] && [ "$("$TOOLS/bin/wasm-bindgen" --version | awk '{print $2}')" = "$wb_version" ]; then
  step "wasm-bindgen-cli $wb_version" "ok (present)"
else
  step "wasm-bindgen-cli $wb_version" "installing into $TOOLS (a few minutes)"
  cargo install -q wasm-bindgen-cli --version "$wb_version" --root "$TOOLS"
fi
