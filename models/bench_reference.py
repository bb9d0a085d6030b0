#!/usr/bin/env python3
"""PyTorch reference numbers for `cargo bench -p lens --bench clip -- --reference FILE`.

Full-size ViT-B/32 (default `CLIPConfig()`: the openai/clip-vit-base-patch32 architecture), random weights
(seed 0), float32, CPU, eval mode, under torch.inference_mode(). Same inputs and timing rule as the Rust
bench (native/benches/clip.rs): one warm-up call, then --iters timed calls, best (minimum) time kept.

    .venv-ref/bin/python models/bench_reference.py [--threads 2] [--iters 3] [--smoke] > bench-ref.json

  image encoder  get_image_features(pixel_values [B,3,224,224])   B = 1 and B = 16
  text encoder   get_text_features(input_ids [16,77])             a full 77-token context, no padding
  text query     get_text_features(input_ids [1,8])               one short query, as a search box sends it

--smoke: one timed iteration (still the full-size model).
Prints one JSON object; the *_per_s values are items (images or texts) per second.
"""

import argparse
import json
import platform

import torch
import transformers
from transformers import CLIPConfig, CLIPModel

from bench_timing import timed


def best_seconds(iters: int, fn) -> float:
    return min(timed(iters, fn))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up (default 3)")
    ap.add_argument("--smoke", action="store_true", help="one timed iteration")
    a = ap.parse_args()
    iters = 1 if a.smoke else a.iters
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    config = CLIPConfig()
    model = CLIPModel(config).to(torch.float32).eval()
    size = config.vision_config.image_size
    context = config.text_config.max_position_embeddings

    result = {}
    with torch.inference_mode():
        for batch, key in [(1, "image_b1_per_s"), (16, "image_b16_per_s")]:
            pixels = torch.randn(batch, 3, size, size)
            result[key] = batch / best_seconds(iters, lambda: model.get_image_features(pixel_values=pixels))
        # Same ids as the Rust bench: 320 + (i*7 + b) % 40000, <|startoftext|> first, <|endoftext|> last.
        batch = 16
        i = torch.arange(context)
        ids = torch.stack([320 + (i * 7 + b) % 40000 for b in range(batch)]).to(torch.int64)
        ids[:, 0], ids[:, -1] = 49406, 49407
        result["text_b16_per_s"] = batch / best_seconds(iters, lambda: model.get_text_features(input_ids=ids))
        # One search query of 8 real tokens ("a photo of a red bicycle"-sized), as the Rust bench's last row.
        query = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 5954, 49407]], dtype=torch.int64)
        result["text_query_per_s"] = 1 / best_seconds(iters, lambda: model.get_text_features(input_ids=query))

    result.update({
        "threads": a.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "model": "ViT-B/32 (default CLIPConfig), random weights, float32, CPU",
        "iters": iters,
        "rule": "best of iters after 1 warm-up",
        "machine": platform.machine(),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
