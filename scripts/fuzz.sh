#!/usr/bin/env bash
# Coverage-guided fuzzing of Lens' decoders and parsers (lens-core, lens-models' model files) with libFuzzer, on the stable toolchain:
# fuzz/ is built with sanitizer-coverage instrumentation (the flags cargo-fuzz passes, without a
# sanitizer, which needs nightly) in its own target directory, and each target runs over its corpus in
# fuzz/corpus/<target>, adding the inputs that reach new code. Crashes land in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh TARGET [SECONDS]   one target (default 600 s)
#   scripts/fuzz.sh all [SECONDS]      every target in turn
#   scripts/fuzz.sh merge TARGET       shrinks the corpus to the inputs that keep its coverage (commit it after)
#   scripts/fuzz.sh seeds              rewrites the seed inputs (fuzz/make_seeds.py, needs Pillow)
#
# Every test run replays the committed corpora and mutates them for a few seconds without instrumentation
# (crates/lens-core/tests/fuzz_corpora.rs); this script is for the long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(image exif request_json documents gguf artifact)
target_dir="${LENS_FUZZ_TARGET_DIR:-$HOME/.cache/lens-fuzz/target}"
triple=$(rustc -vV | sed -n 's/^host: //p')

build() {
  # --target: the flags reach the fuzzed code only, not build scripts.
  RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
    CARGO_TARGET_DIR="$target_dir" cargo build --release --locked --manifest-path fuzz/Cargo.toml \
    --target "$triple" --bins
}

binary() { echo "$target_dir/$triple/release/$1"; }

run() {
  local target="$1" seconds="$2"
  mkdir -p "fuzz/artifacts/$target"
  echo "=== fuzzing $target for $seconds s ==="
  "$(binary "$target")" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="fuzz/artifacts/$target/" -print_final_stats=1 "fuzz/corpus/$target"
}

case "${1:-}" in
  all)
    build
    for t in "${targets[@]}"; do run "$t" "${2:-600}"; done
    ;;
  merge)
    build
    t="${2:?merge TARGET}"
    merged=$(mktemp -d)
    "$(binary "$t")" -set_cover_merge=1 -max_len=65536 "$merged" "fuzz/corpus/$t"
    # The seeds stay under their names; the rest are the inputs libFuzzer kept.
    find "fuzz/corpus/$t" -type f ! -name 'seed-*' -delete
    for f in "$merged"/*; do
      base=$(basename "$f")
      [ -n "$(find "fuzz/corpus/$t" -name 'seed-*' -exec cmp -s "$f" {} \; -print -quit)" ] || cp "$f" "fuzz/corpus/$t/$base"
    done
    rm -rf "$merged"
    echo "fuzz/corpus/$t: $(find "fuzz/corpus/$t" -type f | wc -l) inputs"
    ;;
  seeds)
    python3 fuzz/make_seeds.py
    ;;
  ""|-h|--help)
    sed -n '2,14p' "$0"
    ;;
  *)
    [[ " ${targets[*]} " == *" $1 "* ]] || { echo "unknown target $1 (${targets[*]})" >&2; exit 2; }
    build
    run "$1" "${2:-600}"
    ;;
esac
