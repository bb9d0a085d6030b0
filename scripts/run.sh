#!/usr/bin/env bash
# The main job: start the Lens image service and show it working.
#   scripts/run.sh                     builds `lens`, starts `lens serve`, ingests the sample photos (a
#                                      progress bar), runs a text search and an image search, prints the
#                                      ranked results and the URLs of the API and the browser app, and
#                                      keeps serving until Ctrl-C
#   scripts/run.sh --device wgpu       extra options go to `lens serve` (build the backend in with
#                                      LENS_FEATURES=wgpu)
#   scripts/run.sh embed --model DIR --text T    any lens subcommand: runs just that
# The model: $LENS_MODEL when set; else a real CLIP checkpoint when one was pulled before or can be
# pulled now (openai/clip-vit-base-patch32 from $HF_ENDPOINT); else the bundled tiny fixture model,
# which this script says plainly (its random weights rank arbitrarily).
# Other settings: LENS_DATA (default ./lens-data), LENS_LISTEN (127.0.0.1:8080), LENS_BIN (a built
# lens: no build), LENS_RUN_ONCE=1 (stop after the demonstration instead of serving on).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '%s\n' "$*" >&2; }

if [ -z "${LENS_BIN:-}" ]; then
  scripts/setup.sh --native-only >&2
  cargo build --release -p lens ${LENS_FEATURES:+--features "$LENS_FEATURES"} >&2
  lens="${CARGO_TARGET_DIR:-target}/release/lens"
else
  lens="$LENS_BIN"
fi
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$lens" "$@"
fi

# --- the model -------------------------------------------------------------------------------------
real=openai/clip-vit-base-patch32
pulled_before="${LENS_HOME:-$HOME/.cache/lens}/models/${real/\//--}"
if [ -n "${LENS_MODEL:-}" ]; then
  model="$LENS_MODEL"
  say "model: $model (LENS_MODEL)"
elif [ -f "$pulled_before/lens-manifest.json" ]; then
  model="$pulled_before"
  say "model: $real (pulled before, in $model)"
elif pulled=$("$lens" models pull "$real" 2>/tmp/lens-pull.$$); then
  model="$pulled"
  say "model: $real, pulled into $model"
else
  model=models/fixtures/clip-tiny-gelu
  reason=$(tail -1 /tmp/lens-pull.$$ | sed -e 's/^error: //' -e 's/: error sending request.*//' | cut -c1-120)
  say "model: no real CLIP checkpoint here and none could be pulled ($reason)."
  say "       Using the bundled tiny fixture model $model instead: it has random weights, so the"
  say "       rankings below are arbitrary. Set LENS_MODEL to a checkpoint directory for real results."
fi
rm -f /tmp/lens-pull.$$

# --- the service -----------------------------------------------------------------------------------
listen="${LENS_LISTEN:-127.0.0.1:8080}"
base="http://$listen"
data="${LENS_DATA:-./lens-data}"
web=()
if [ -f dist/index.html ]; then web=(--web-dir dist); fi
log="$data/serve.log"
mkdir -p "$data"
LENS_LOG="${LENS_LOG:-warn}" "$lens" serve --model "$model" --data "$data" --listen "$listen" "${web[@]}" "$@" \
  2>"$log" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
trap 'say ""; say "stopping"; exit 0' INT TERM
for _ in $(seq 1 600); do
  if ! kill -0 "$server" 2>/dev/null; then
    say "lens serve stopped; its log ($log):"
    tail -5 "$log" >&2
    exit 1
  fi
  if curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null || { say "lens serve is not ready after 120 s (log: $log)"; exit 1; }
say "lens serve is ready at $base (data in $data, log in $log)"

# --- ingest, search ----------------------------------------------------------------------------------
photos=(astronaut.png chelsea_palette.png coffee.jpg rocket.jpg coins_grey.jpg camera_grey.png
  astronaut_lossless.webp coffee_palette.gif)
say ""
say "ingesting ${#photos[@]} sample photos:"
"$lens" ingest --server "$base" --tags sample "${photos[@]/#/models/fixtures/images/}" >/dev/null

show() {
  # Ids are the first 32 hex digits of the bytes' SHA-256: name the sample each one is.
  python3 -c '
import hashlib, json, os, sys
base, files = sys.argv[1], sys.argv[2:]
names = {hashlib.sha256(open(f, "rb").read()).hexdigest()[:32]: os.path.basename(f) for f in files}
for rank, r in enumerate(json.load(sys.stdin)["results"], 1):
    score, id, url, caption = r["score"], r["id"], r["url"], r.get("caption") or ""
    name = names.get(id, id)
    print(f"  {rank}. {score:+.3f}  {name:<24} {base}{url}  {caption}")
' "$base" "${photos[@]/#/models/fixtures/images/}"
}
query="a rocket on the launch pad"
say ""
say "text search: \"$query\""
"$lens" search --server "$base" --k 3 "$query" | show
say ""
say "image search: models/fixtures/images/rocket_exif6.jpg (the rocket photo, rotated by its EXIF tag)"
"$lens" search --server "$base" --k 3 --image models/fixtures/images/rocket_exif6.jpg | show

say ""
say "the API:          $base/v1   (OpenAPI document: $base/v1/openapi.json, health: $base/readyz)"
if [ ${#web[@]} -gt 0 ]; then
  say "the browser app:  $base/   (dist/, served by lens serve)"
else
  say "the browser app:  not built — run \`trunk build --release\` (scripts/setup.sh installs trunk) and"
  say "                  this script again to have it at $base/, or \`trunk serve\` for http://127.0.0.1:8081"
fi
if [ "${LENS_RUN_ONCE:-0}" = 1 ]; then
  exit 0
fi
say ""
say "serving until Ctrl-C"
wait $server
