#!/usr/bin/env python3
"""transformers reference numbers for `cargo bench -p lens --bench llama -- --checkpoint DIR --reference FILE`,
and the checkpoint both sides load.

The checkpoint: a `LlavaForConditionalGeneration` with llava-hf/llava-1.5-7b-hf's vision side (CLIP ViT-L/14 at
336x336, `vision_feature_layer=-2`, `default` strategy: 576 image tokens, GELU projector) and a TinyLlama-1.1B
language model (hidden 2048, 22 layers, 32 heads, 4 KV heads, MLP 5632, vocab 32064 with `<image>` = 32000),
random weights (transformers' init, seed 0), saved by `save_pretrained` in float32 (5.6 GB, transformers 5's
tensor names, sharded as it shards). A 7B decoder in float32 (27 GB) does not fit the machines Lens is measured
on; the decoder's shape is the issue's TinyLlama. The LLaMA rows use the same checkpoint's language model on its
own (text only), so the weights are written and loaded once.

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/bench_llama_reference.py --checkpoint DIR [--threads 2] \\
        [--iters 2] > llama-ref.json

DIR is written first when it holds no checkpoint (in a child process, so that this one's peak memory is the
load's). Then, float32, CPU, eval, `torch.inference_mode()`, the default attention (sdpa):

  load_s, load_peak_rss_gb   `from_pretrained(DIR, dtype=float32)`: seconds and growth of peak RSS over the RSS
                             before it (GB)
  llama_prefill128_s         text only, 128 prompt ids: `generate(max_new_tokens=1)`, the prefill and one token
  llama_decode32_s           `generate(max_new_tokens=33)` minus the prefill: 32 decoding steps
  llava_image_s              `get_image_features(pixel_values [1,3,336,336])`: vision tower and projector
  llava_prefill_s            one image and 24 text ids (600 positions): `generate(max_new_tokens=1)`
  llava_decode32_s           `generate(max_new_tokens=33)` minus the prefill

Every generation is greedy with `min_new_tokens = max_new_tokens`, so both sides decode the same number of steps
whatever the random weights prefer. Prompt ids: 1 (BOS), then `100 + (i * 7919) % 31000`; the LLaVA prompt puts
576 `<image>` ids after the fourth. Pixel values: `(i % 255) / 127.5 - 1` over the flattened tensor. The Rust
bench (native/benches/llama.rs) builds the same inputs. Timing rule: one warm-up call, then --iters timed calls,
best kept (`<key>_median` the median). Prints one JSON object on stdout and a table on stderr.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
import transformers
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from bench_timing import timed

PROMPT = 128
IMAGE_PROMPT_TEXT = 24
NEW = 32
IMAGE_TOKEN = 32000


def config() -> LlavaConfig:
    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                              image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=32064, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                       num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
                       eos_token_id=2, pad_token_id=0)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                       projector_hidden_act="gelu", vision_feature_layer=-2,
                       vision_feature_select_strategy="default", image_seq_length=576, tie_word_embeddings=False)


def write_checkpoint(out: Path):
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config()).to(torch.float32).eval()
    model.save_pretrained(out)


def text_ids() -> list[int]:
    return [1] + [100 + (i * 7919) % 31000 for i in range(PROMPT - 1)]


def image_prompt_ids() -> list[int]:
    text = [1] + [100 + (i * 7919) % 31000 for i in range(IMAGE_PROMPT_TEXT - 1)]
    return text[:4] + [IMAGE_TOKEN] * 576 + text[4:]


def pixels() -> torch.Tensor:
    i = torch.arange(3 * 336 * 336, dtype=torch.int64)
    return ((i % 255).to(torch.float32) / 127.5 - 1.0).reshape(1, 3, 336, 336)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="the checkpoint's directory (written if empty)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", type=int, default=2, help="timed iterations after one warm-up (default 2)")
    ap.add_argument("--write-only", action="store_true", help="write the checkpoint and stop")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.write_only:
        write_checkpoint(a.checkpoint)
        return
    if not (a.checkpoint / "config.json").is_file():
        subprocess.run([sys.executable, __file__, "--checkpoint", str(a.checkpoint), "--write-only",
                        "--threads", str(a.threads)], check=True)

    process = psutil.Process()
    rss_before = process.memory_info().rss
    start = time.perf_counter()
    model = LlavaForConditionalGeneration.from_pretrained(a.checkpoint, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux.
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e9

    def generate(ids: list[int], new: int, pixel_values=None):
        input_ids = torch.tensor([ids], dtype=torch.int64)
        kwargs = {} if pixel_values is None else {"pixel_values": pixel_values}
        out = model.generate(input_ids=input_ids, do_sample=False, min_new_tokens=new, max_new_tokens=new,
                             pad_token_id=0, **kwargs)
        assert out.shape == (1, len(ids) + new), out.shape

    times = {}
    with torch.inference_mode():
        text = text_ids()
        times["llama_prefill128_s"] = timed(a.iters, lambda: generate(text, 1))
        times["llama_generate33_s"] = timed(a.iters, lambda: generate(text, NEW + 1))
        pv = pixels()
        times["llava_image_s"] = timed(a.iters, lambda: model.get_image_features(pixel_values=pv))
        image = image_prompt_ids()
        times["llava_prefill_s"] = timed(a.iters, lambda: generate(image, 1, pv))
        times["llava_generate33_s"] = timed(a.iters, lambda: generate(image, NEW + 1, pv))

    result = {}
    for key, ts in times.items():
        result[key] = min(ts)
        result[f"{key}_median"] = statistics.median(ts)
    for part in ["llama", "llava"]:
        prefill = "llama_prefill128_s" if part == "llama" else "llava_prefill_s"
        result[f"{part}_decode32_s"] = result[f"{part}_generate33_s"] - result[prefill]
    result.update({
        "load_s": load_s,
        "load_peak_rss_gb": (peak - rss_before) / 1e9,
        "weights_gb": weights_gb,
        "times": times,
        "threads": a.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attention": model.config._attn_implementation,
        "iters": a.iters,
        "rule": "plain keys: best of iters after 1 warm-up; decode = best generate(33) - best prefill",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    })
    print(json.dumps(result))
    lines = [f"\ntransformers {transformers.__version__} (torch {torch.__version__}, {a.threads} threads, "
             f"{result['attention']}), LLaVA ViT-L/14-336 + TinyLlama-1.1B shape, random weights, float32",
             f"load {load_s:.1f} s, peak RSS +{result['load_peak_rss_gb']:.2f} GB for {weights_gb:.2f} GB of weights",
             "| work | positions | best s | tokens/s |", "|---|---|---|---|",
             f"| LLaMA prefill | {PROMPT} | {result['llama_prefill128_s']:.3f} | "
             f"{PROMPT / result['llama_prefill128_s']:.1f} |",
             f"| LLaMA decode | {NEW} | {result['llama_decode32_s']:.3f} | {NEW / result['llama_decode32_s']:.2f} |",
             f"| LLaVA image features | 576 | {result['llava_image_s']:.3f} | – |",
             f"| LLaVA prefill (image + text) | {len(image)} | {result['llava_prefill_s']:.3f} | "
             f"{len(image) / result['llava_prefill_s']:.1f} |",
             f"| LLaVA decode | {NEW} | {result['llava_decode32_s']:.3f} | {NEW / result['llava_decode32_s']:.2f} |"]
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
