#!/usr/bin/env python3
"""transformers' side of `cargo bench -p lens --bench chat_load` (which runs this script itself with
`--reference-python`), and the TinyLlama-shaped checkpoint both sides load.

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/bench_chat_reference.py --write DIR

writes a `LlamaForCausalLM` with TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 KV heads, MLP 5632,
vocab 32000, 2048 positions, untied head), random weights (transformers' init, seed 0), float32 (4.4 GB), with the
real LLaMA SentencePiece tokenizer (models/fixtures/llama-tiny's tokenizer.json and tokenizer_config.json) and
TinyLlama-1.1B-Chat-v1.0's chat template (chat_template.jinja).

    .venv-ref/bin/python models/bench_chat_reference.py --model DIR --kind llava|llama --messages JSON \\
        [--image PATH] --clients 1,4,8 --new N --prompt-tokens P [--threads 2] [--iters 1]

renders the conversation with the checkpoint's chat template and tokenizes it as Lens does (LLaVA: the processor,
`<image>` expanded; LLaMA: the template's text without added special tokens), asserts it is P tokens (what the
server counted), and then, for each N, on a batch of N copies of those ids (transformers' way of serving N
conversations at once; no padding needed): `ttft_s`, `generate(max_new_tokens=1)` (the batch's prefill and first
token: every client waits for it), and `total_s`, `generate(min_new_tokens=max_new_tokens=N)`; greedy, float32,
CPU, eval, `torch.inference_mode()`. One warm-up generation first; best of --iters. Prints one JSON object:
{"clients": {"N": {"ttft_s", "total_s"}}, "about": "..."}.
"""

import argparse
import base64
import io
import json
import shutil
import sys
import time
from pathlib import Path

import torch
import transformers
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, LlamaConfig, LlamaForCausalLM, LlavaForConditionalGeneration

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# TinyLlama/TinyLlama-1.1B-Chat-v1.0's template (Zephyr's turns).
TINYLLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)


def write_checkpoint(out: Path):
    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                         num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                         rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(out)
    for name in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(FIXTURES / "llama-tiny" / name, out / name)
    (out / "chat_template.jinja").write_text(TINYLLAMA_CHAT_TEMPLATE)


def data_url_image(url: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def llava_inputs(model_dir: Path, messages: list, image_path: Path | None):
    processor = AutoProcessor.from_pretrained(model_dir)
    images, turns = [], []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        parts = []
        for part in content:
            if part["type"] == "image_url":
                url = part["image_url"]["url"]
                images.append(Image.open(image_path).convert("RGB") if image_path else data_url_image(url))
                parts.append({"type": "image"})
            else:
                parts.append(part)
        turns.append({"role": m["role"], "content": parts})
    text = processor.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, images=images or None, return_tensors="pt")
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, inputs["input_ids"], {"pixel_values": inputs["pixel_values"]} if images else {}


def llama_inputs(model_dir: Path, messages: list):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, ids, {}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", type=Path, help="write the TinyLlama-shaped checkpoint to this directory and stop")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--kind", choices=["llava", "llama"])
    ap.add_argument("--messages", help="the conversation, as the bench sends it (JSON)")
    ap.add_argument("--image", type=Path, help="the photo the conversation's image part holds")
    ap.add_argument("--clients", default="1,4,8")
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, required=False)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.write:
        a.write.mkdir(parents=True, exist_ok=True)
        write_checkpoint(a.write)
        return

    messages = json.loads(a.messages)
    if a.kind == "llava":
        model, ids, extra = llava_inputs(a.model, messages, a.image)
    else:
        model, ids, extra = llama_inputs(a.model, messages)
    assert a.prompt_tokens is None or ids.shape[1] == a.prompt_tokens, (ids.shape, a.prompt_tokens)
    pad = model.generation_config.pad_token_id
    pad = pad if pad is not None else 0

    def generate(n: int, new: int):
        batch = {k: v.repeat(n, *([1] * (v.dim() - 1))) for k, v in extra.items()}
        out = model.generate(input_ids=ids.repeat(n, 1), attention_mask=torch.ones(n, ids.shape[1], dtype=torch.long),
                             do_sample=False, min_new_tokens=new, max_new_tokens=new, pad_token_id=pad, **batch)
        assert out.shape == (n, ids.shape[1] + new), out.shape

    def best(fn) -> float:
        times = []
        for _ in range(a.iters):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    result = {}
    with torch.inference_mode():
        generate(1, 2)  # warm-up
        for n in (int(c) for c in a.clients.split(",")):
            result[str(n)] = {"ttft_s": best(lambda: generate(n, 1)), "total_s": best(lambda: generate(n, a.new))}
    about = (f"transformers {transformers.__version__}, torch {torch.__version__}, {a.threads} threads, "
             f"{model.config._attn_implementation} attention, generate() on a batch of N, best of {a.iters}")
    print(json.dumps({"clients": result, "about": about, "prompt_tokens": ids.shape[1]}))
    print(about, json.dumps(result), file=sys.stderr)


if __name__ == "__main__":
    main()
