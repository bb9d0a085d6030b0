#!/usr/bin/env bash
# The main job: build `lens` and run it. With arguments, `scripts/run.sh embed --model DIR --text "..."`;
# without, a demonstration on the committed fixture model and real photos.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --native-only
cargo build --release -p lens
lens="${CARGO_TARGET_DIR:-target}/release/lens"
if [ $# -gt 0 ]; then
  exec "$lens" "$@"
fi
model=models/fixtures/clip-tiny-gelu
set -x
"$lens" embed --model "$model" --image models/fixtures/images/astronaut.png models/fixtures/images/rocket.jpg
"$lens" embed --model "$model" --text "a photo of a cat" "an astronaut"
"$lens" classify --model "$model" --image models/fixtures/images/astronaut.png --labels "a photo of a cat,an astronaut,a rocket"
