#!/usr/bin/env bash
# The main job: build `lens` and embed / classify real photos with the committed fixture model.
#   scripts/run.sh                             the demonstration below
#   scripts/run.sh --device wgpu               options are added to every lens command
#                                              (build the backend in with LENS_FEATURES=wgpu)
#   scripts/run.sh embed --model DIR --text T  a lens subcommand: runs just that
# Set-up and build messages go to stderr; stdout is lens's JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --native-only >&2
cargo build --release -p lens ${LENS_FEATURES:+--features "$LENS_FEATURES"}
lens="${CARGO_TARGET_DIR:-target}/release/lens"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$lens" "$@"
fi
model=models/fixtures/clip-tiny-gelu
img=models/fixtures/images
set -x
"$lens" embed --model "$model" --image "$img/astronaut.png" "$img/rocket.jpg" "$@"
"$lens" embed --model "$model" --text "a photo of a cat" "an astronaut" "$@"
"$lens" classify --model "$model" --image "$img/astronaut.png" --labels "a photo of a cat,an astronaut,a rocket" "$@"
