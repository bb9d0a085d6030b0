#!/usr/bin/env python3
"""PyTorch reference numbers for `cargo bench -p lens --bench blip -- --reference FILE`.

Full-size BLIP-base (default `BlipConfig()`: Salesforce/blip-image-captioning-base's architecture, ViT-B/16 at
384x384 + BERT-base decoder with cross-attention), random weights (seed 0), float32, CPU, eval mode, under
torch.inference_mode(). Same inputs and work as the Rust bench (native/benches/blip.rs): pixel values
`(i % 255) / 127.5 - 1` over the flattened [B,3,384,384] tensor, unconditional captions of exactly 20 new
tokens (`min_new_tokens = max_new_tokens = 20`, do_sample=False), so both sides decode the same number of
steps whatever the random weights prefer.

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/bench_blip_reference.py [--threads 2] [--iters 3] [--smoke] \\
        > blip-ref.json

  vision_b1_s     model.vision_model(pixel_values [1,3,384,384])
  greedy20_b1_s   model.generate(pixel_values [1,...], 20 new tokens, greedy)
  beam3_20_b1_s   the same with num_beams=3
  greedy20_b8_s   model.generate(pixel_values [8,...], 20 new tokens, greedy); greedy20_b8_captions_per_s = 8 / it

Timing rule: one warm-up call, then --iters timed calls. The plain keys hold the best (minimum) time, the rule
of models/bench_reference.py and of the Rust bench they are compared with; `<key>_median` holds the median and
`times` every timed call, in seconds. --smoke: one timed iteration (still the full-size model).
Prints one JSON object on stdout and a human-readable table on stderr.
"""

import argparse
import json
import os
import platform
import statistics
import sys

import torch
import transformers
from transformers import BlipConfig, BlipForConditionalGeneration

from bench_timing import timed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up (default 3)")
    ap.add_argument("--smoke", action="store_true", help="one timed iteration")
    a = ap.parse_args()
    iters = 1 if a.smoke else a.iters
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    config = BlipConfig()
    model = BlipForConditionalGeneration(config).to(torch.float32).eval()
    size = config.vision_config.image_size

    def pixels(batch: int) -> torch.Tensor:
        i = torch.arange(batch * 3 * size * size, dtype=torch.int64)
        return ((i % 255).to(torch.float32) / 127.5 - 1.0).reshape(batch, 3, size, size)

    def caption(batch: int, num_beams: int):
        pv = pixels(batch)

        def run():
            out = model.generate(pixel_values=pv, do_sample=False, num_beams=num_beams, min_new_tokens=20,
                                 max_new_tokens=20)
            assert out.shape == (batch, 21), out.shape  # [DEC] + 20 new tokens
        return run

    load_before = os.getloadavg()
    times = {}
    with torch.inference_mode():
        pv1 = pixels(1)
        times["vision_b1_s"] = timed(iters, lambda: model.vision_model(pixel_values=pv1))
        times["greedy20_b1_s"] = timed(iters, caption(1, 1))
        times["beam3_20_b1_s"] = timed(iters, caption(1, 3))
        times["greedy20_b8_s"] = timed(iters, caption(8, 1))
    load_after = os.getloadavg()

    result = {}
    for key, ts in times.items():
        result[key] = min(ts)
        result[f"{key}_median"] = statistics.median(ts)
    result["greedy20_b1_captions_per_s"] = 1 / result["greedy20_b1_s"]
    result["beam3_20_b1_captions_per_s"] = 1 / result["beam3_20_b1_s"]
    result["greedy20_b8_captions_per_s"] = 8 / result["greedy20_b8_s"]
    result["greedy20_b8_captions_per_s_median"] = 8 / result["greedy20_b8_s_median"]
    result.update({
        "times": times,
        "threads": a.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": "BLIP-base (default BlipConfig: ViT-B/16 384 + BERT-base decoder), random weights, float32, CPU",
        "work": "unconditional captions of exactly 20 new tokens (min_new_tokens = max_new_tokens = 20), "
                "do_sample=False, KV cache on (generate's default)",
        "iters": iters,
        "rule": "plain keys: best of iters after 1 warm-up; *_median: median of the same iters",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    })
    print(json.dumps(result))

    rows = [("vision encoder", 1, "vision_b1_s"), ("caption, 20 tokens, greedy", 1, "greedy20_b1_s"),
            ("caption, 20 tokens, beam 3", 1, "beam3_20_b1_s"), ("caption, 20 tokens, greedy", 8, "greedy20_b8_s")]
    lines = [f"\nPyTorch {torch.__version__}, transformers {transformers.__version__}, {a.threads} threads, "
             f"BLIP-base random weights, {iters} timed after 1 warm-up",
             "| work | batch | best s | median s | captions/s (best) |", "|---|---|---|---|---|"]
    for what, batch, key in rows:
        per_s = f"{batch / result[key]:.3f}" if what.startswith("caption") else "–"
        lines.append(f"| {what} | {batch} | {result[key]:.3f} | {result[key + '_median']:.3f} | {per_s} |")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
