#!/usr/bin/env python3
"""Generate Lens's LLaMA reference fixtures with the reference implementation, offline and deterministically.

Run from the repository root (after models/setup-reference.sh, or with any venv holding the versions pinned in
models/requirements-reference.txt, sentencepiece and protobuf included; no network is needed or used):

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/generate_llama_fixtures.py

Reference implementation: transformers 5.23.0 (transformers/models/llama/{configuration_llama.py,
modeling_llama.py, tokenization_llama.py}, transformers/modeling_rope_utils.py, greedy and beam search in
transformers/generation/utils.py), torch 2.15.0 (CPU, 2 threads), tokenizers 0.23.3, sentencepiece 0.2.3,
protobuf 7.36.2 (both only to convert the SentencePiece model), safetensors, numpy as pinned. Attention is the
eager implementation (`attn_implementation="eager"`: matmul, + mask, softmax in f32, matmul), the order of
operations the Rust port follows; SDPA differs from it by float rounding only.

Everything is seeded and computed on 2 threads, so re-running reproduces the same files on one machine. Across
CPUs the weights and the token ids stay identical, but PyTorch's float outputs (logits) differ in the last bits
(~1e-6 relative): far inside the tests' tolerances (1e-4 relative L2; greedy decisions are asserted to have
margins >= GREEDY_MARGIN, beam decisions >= BEAM_MARGIN, so they cannot flip).

Writes two tiny random `LlamaForCausalLM` checkpoints in the HuggingFace hub layout:

models/fixtures/llama-tiny/   LLaMA-2 style
  config.json             hidden 32, 2 layers, 4 heads, 2 key/value heads (GQA, head_dim 8), intermediate 64,
                          vocab 32000, max_position_embeddings 64, rms_norm_eps 1e-5, default RoPE theta 10000,
                          untied lm_head. Rewritten after save_pretrained in the layout meta-llama/Llama-2-7b-hf
                          publishes: top-level `rope_theta` and `"rope_scaling": null` instead of transformers 5's
                          `rope_parameters` (asserted: transformers reads both to the same inv_freq).
  generation_config.json  Llama-2's: bos 1, eos 2, pad 0, do_sample true, temperature 0.6, top_p 0.9 (the
                          reference's generate() calls below pass do_sample=False explicitly).
  model.safetensors       f16, as Llama-2 is published. The weights were rounded to f16 before any reference was
                          computed, so the f32 model that computed them holds exactly the stored values.
  tokenizer.json, tokenizer_config.json
                          the real LLaMA SentencePiece model (shared/reference/tokenizers/llama-spm/tokenizer.model,
                          32000 pieces) converted by transformers: `AutoTokenizer.from_pretrained(dir,
                          add_bos_token=True)` with tokenizer_config `tokenizer_class: LlamaTokenizer` (as Llama-2
                          publishes it; without it AutoTokenizer picks a generic backend without the Metaspace
                          prefix), then save_pretrained; tokenizer.json re-serialised without indentation.
  reference.safetensors / reference.json (see below)

models/fixtures/llama3-tiny/  LLaMA-3 style
  config.json             hidden 64, 2 layers, 4 heads, 1 key/value head (multi-query, head_dim 16), intermediate
                          128, vocab 1024, max_position_embeddings 1024, `llama3` RoPE (theta 500000, factor 8,
                          low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 256: with
                          head_dim 16 the 8 frequencies fall in all three regimes: kept, smoothed, divided by
                          factor), tied lm_head (no `lm_head.weight` in the file), as transformers 5 writes it
                          (`rope_parameters`).
  generation_config.json  bos <|begin_of_text|>, eos [<|end_of_text|>, <|eot_id|>] (a list, as Llama 3 publishes).
  model.safetensors       f32.
  tokenizer.json, tokenizer_config.json
                          a byte-level BPE trained here with the `tokenizers` library on CORPUS below: Llama 3's
                          pre-tokenizer (its Split regex + ByteLevel without regex), 1000 tokens trained, then the
                          special tokens appended as Llama 3 does (ids 1000..1004), a TemplateProcessing
                          post-processor that prepends <|begin_of_text|>, the ByteLevel decoder.
  reference.safetensors / reference.json

Random weights that decide: HF's default init (std 0.02) gives nearly uniform logits, so greedy ties would make the
fixture fragile. After construction every parameter is re-drawn in named_parameters order from the seeded
generator: embed_tokens N(0, 1), RMSNorm weights N(1, 0.1), every other matrix N(0, 1/sqrt(fan_in)) (lm_head of
llama-tiny: N(0, 0.5); in llama3-tiny o_proj and down_proj N(0, OUT_GAIN/sqrt(fan_in)): with a tied head a weak
residual update makes greedy repeat the last token forever). In llama3-tiny the <|eot_id|> row (the tied head's row
too) is then set so that greedy decoding of one prompt stops on that second EOS id (place_eot); it is never an
input before that, so nothing else changes.

reference.safetensors (all f32):
  inv_freq                  [head_dim / 2]  model.model.rotary_emb.inv_freq (transformers' rope init function)
  logits.<case>             [1, seq, vocab] model(input_ids).logits at every position (one uncached pass)
  cached_logits.<case>      [1, seq, vocab] the same sequence fed through the cache: a prefill of `prefill`
                            tokens, then one token per call (llama3-tiny only: llama-tiny's 32000-wide rows
                            would make the fixture too big; its JSON records the reference's own cached-vs-full
                            relative L2 instead)
reference.json:
  tokenization     text -> input_ids as AutoTokenizer gives them (add_special_tokens=True), and decode()
  logits_cases     per case: text, input_ids (the whole sequence fed: for llama-tiny's "continued" case the prompt
                   followed by greedy tokens, so positions past the prompt are covered), prefill, whether cached
                   logits are stored, the reference's cached-vs-full relative L2
  generation       per case: prompt ids, generate() kwargs, the eos ids and pad generate() used, the returned ids
                   (prompt included), where generation stopped, the smallest decision margin
  inv_freq_variants config.json fragments (legacy `rope_scaling` + `rope_theta`, transformers 5 `rope_parameters`,
                   `type` vs `rope_type`, linear, llama3, a top-level `original_max_position_embeddings`) with
                   the inv_freq transformers' LlamaRotaryEmbedding computes for each
  lm_head          llama-tiny: with tie_word_embeddings false and `lm_head.weight` deleted from the file,
                   from_pretrained reports it MISSING and initialises it randomly (it does NOT tie it)
"""

import os

# Offline, always: nothing is downloaded, and tokenizer_config.json records local_files_only=true either way.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import sentencepiece
import tokenizers
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import save_file
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file
from tokenizers import Regex, decoders, models, pre_tokenizers, processors, trainers
from transformers import (AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM, LogitsProcessor,
                          LogitsProcessorList, PreTrainedTokenizerFast)
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from beam_margins import BeamMargins  # models/, on sys.path when run as a script

ROOT = Path(__file__).resolve().parent  # models/
OUT = ROOT / "fixtures"

SEED = 0  # llama-tiny
LLAMA3_SEED = 11  # llama3-tiny: chosen (seeds 0..11 tried) so that no prompt's greedy output is one token repeated
GREEDY_MARGIN, BEAM_MARGIN = 1e-3, 1e-4
OUT_GAIN = 6.0  # llama3-tiny: o_proj and down_proj drawn with std OUT_GAIN / sqrt(fan_in)
EOT_AFTER, EOT_ALPHAS = 6, [2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0]


def find_spm_model() -> Path:
    # shared/ sits next to the checkout (../shared) or inside it (shared/).
    for base in [ROOT.parent, ROOT.parent.parent]:
        f = base / "shared" / "reference" / "tokenizers" / "llama-spm" / "tokenizer.model"
        if f.is_file():
            return f
    raise SystemExit("shared/reference/tokenizers/llama-spm/tokenizer.model not found (next to or inside the repo)")


LLAMA_TINY = dict(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, hidden_act="silu",
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
                  bos_token_id=1, eos_token_id=2, pad_token_id=None)
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 256}
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
BOS3, EOS3, EOT3 = 1000, 1001, 1002
LLAMA3_TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=1, max_position_embeddings=1024, rms_norm_eps=1e-5, hidden_act="silu",
                   rope_parameters=dict(LLAMA3_ROPE), tie_word_embeddings=True, bos_token_id=BOS3,
                   eos_token_id=EOS3, pad_token_id=None)

# Llama 3's pre-tokenizer split (tokenizer.json of meta-llama/Meta-Llama-3-8B).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = """\
The quick brown fox jumps over the lazy dog. A lens gathers light and forms an image of the world.
Pictures of cats, dogs, mountains, rivers and cities are searched by what they show, not by their file names.
A photo of an astronaut standing next to a flag. A rocket launching into a clear blue sky, with smoke and fire.
Two people are walking along the beach at sunset; the waves are gentle and the sand is warm.
There is a cup of coffee on a wooden table, next to a notebook and a pen.
Captioning models describe images in words; language models continue text one token at a time.
Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex.
Complex is better than complicated. Flat is better than nested. Sparse is better than dense.
Readability counts. Special cases aren't special enough to break the rules. Errors should never pass silently.
In the face of ambiguity, refuse the temptation to guess. Now is better than never.
fn main() { let x = 42; println!("{x}"); } def f(a, b): return a + b  # 1, 2, 3, 100, 2024, 3.14159
Le renard brun rapide saute par-dessus le chien paresseux. Où est la gare ? Très bien, merci beaucoup.
Der schnelle braune Fuchs springt über den faulen Hund. Grüße aus München! Straße, Mädchen, schön.
El zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca? ¡Qué día tan bonito!
日本語のテキストも少し入れておきます。東京、京都、大阪。写真の中の猫はかわいいです。
Русский текст: быстрая коричневая лиса. Ελληνικά: γρήγορη καφέ αλεπού. 中文：快速的棕色狐狸。
Emoji too: 🦙 🐱 🐶 🚀 ☕ 🌅 — and symbols: € £ ¥ © ® ™ ± × ÷ ≤ ≥ ≠ ∞ → ←.
I'm sure you're right; we'll see what they've done, and it's what he'd want.
"""

# (text) for the tokenizer cases; the first ones are also the model's prompts.
SPM_TEXTS = ["Hello world", "héllo wörld 日本 🦙", "The capital of France is", "\n\nfoo  bar\tbaz",
             " leading space", "I'm 100% sure: it's €42.", "", "ΑΒΓ абв ﷺ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
BPE_TEXTS = ["A photo of a cat", "Grüße aus München! 🦙🚀", "The capital of France is", "日本語のテキスト",
             "fn main() { println!(\"{x}\"); }", "  two  spaces\nand a newline", "", "I'm 100% sure: it's €42."]


class GreedyMargins(LogitsProcessor):
    """Appended after generate()'s own processors: sees the final scores greedy takes the argmax of and records
    top-1 minus top-2 for every row that has not produced an EOS id yet."""

    def __init__(self, eos_ids):
        self.eos, self.prompt_len, self.margins = set(eos_ids), None, []

    def __call__(self, input_ids, scores):
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        top2 = scores.topk(2, dim=-1).values
        for r in range(input_ids.shape[0]):
            if not any(t in self.eos for t in input_ids[r, self.prompt_len:].tolist()):
                self.margins.append((top2[r, 0] - top2[r, 1]).item())
        return scores


def redraw(model: LlamaForCausalLM, lm_head_std: float, out_gain: float):
    """Re-draw every parameter (see the module docstring) so that generation is decisive; round to f16 when the
    checkpoint is stored in f16 (done by the caller)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.embed_tokens.weight":
                p.normal_(0.0, 1.0)
            elif name.endswith("norm.weight"):
                p.normal_(1.0, 0.1)
            elif name == "lm_head.weight":
                p.normal_(0.0, lm_head_std)
            else:
                assert p.ndim == 2, name
                gain = out_gain if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
                p.normal_(0.0, gain / math.sqrt(p.shape[1]))


def place_eot(model: LlamaForCausalLM, prompt: list) -> str:
    """Make greedy decoding of `prompt` stop on <|eot_id|> after EOT_AFTER tokens: its row of the tied embedding
    becomes alpha times the unit final hidden state (after model.norm) that predicts token EOT_AFTER + 1, with the
    smallest alpha in EOT_ALPHAS for which greedy stops there (and not earlier) on <|eot_id|>."""
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=EOT_AFTER, min_new_tokens=EOT_AFTER,
                             do_sample=False, eos_token_id=[EOS3], pad_token_id=EOS3)
        h = model.model(out).last_hidden_state[0, -1]
        for alpha in EOT_ALPHAS:
            model.model.embed_tokens.weight[EOT3] = alpha * h / h.norm()
            again = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=EOT_AFTER + 4,
                                   do_sample=False, eos_token_id=[EOS3, EOT3], pad_token_id=EOS3)[0].tolist()
            if again[len(prompt):] == out[0, len(prompt):].tolist() + [EOT3]:
                return (f"embed_tokens[<|eot_id|>] = {alpha} * unit(norm(h)) where h is the final hidden state "
                        f"predicting generated token {EOT_AFTER + 1} of prompt {BPE_TEXTS[2]!r}")
    raise SystemExit("no alpha in EOT_ALPHAS makes greedy stop on <|eot_id|>")


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def full_and_cached(model, ids: list, prefill: int):
    """Logits of one uncached pass and of a prefill of `prefill` tokens followed by one token per call."""
    x = torch.tensor([ids])
    with torch.no_grad():
        full = model(x, use_cache=False).logits
        out = model(x[:, :prefill], use_cache=True)
        parts, past = [out.logits], out.past_key_values
        for i in range(prefill, len(ids)):
            out = model(x[:, i:i + 1], past_key_values=past, use_cache=True)
            parts.append(out.logits)
            past = out.past_key_values
    return full, torch.cat(parts, dim=1)


def generate_case(model, ids_rows: list, eos_ids: list, pad: int, kwargs: dict):
    """model.generate() on equal-length rows (no padding), with the decision margins measured."""
    x = torch.tensor(ids_rows)
    greedy = GreedyMargins(eos_ids)
    # BeamMargins wraps the model's beam-search helpers for good: one beam case per model.
    beam = BeamMargins(model) if kwargs.get("num_beams", 1) > 1 else None
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), eos_token_id=eos_ids, pad_token_id=pad,
                             do_sample=False, **kwargs,
                             logits_processor=LogitsProcessorList([greedy] if kwargs.get("num_beams", 1) == 1 else []))
    margins = greedy.margins if kwargs.get("num_beams", 1) == 1 else beam.margins
    limit = GREEDY_MARGIN if kwargs.get("num_beams", 1) == 1 else BEAM_MARGIN
    assert margins and min(margins) > limit, (kwargs, min(margins) if margins else None)
    rows = out.tolist()
    prompt_len = len(ids_rows[0])
    stops = []
    for r in rows:
        gen = r[prompt_len:]
        at = next((i for i, t in enumerate(gen) if t in eos_ids), None)
        stops.append(None if at is None else {"index": at, "token": gen[at]})
    return rows, stops, min(margins)


def inv_freq_of(config_json: dict) -> list:
    """inv_freq transformers computes for a config.json fragment (loaded as from_pretrained loads config.json)."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps({"model_type": "llama", **config_json}))
        config = LlamaConfig.from_pretrained(tmp)
    return LlamaRotaryEmbedding(config).inv_freq.tolist()


INV_FREQ_VARIANTS = {
    # name: config.json fragment (hidden 64 / 4 heads: head_dim 16, unless said)
    "legacy_default": {"hidden_size": 64, "num_attention_heads": 4, "rope_theta": 10000.0, "rope_scaling": None},
    "no_rope_keys": {"hidden_size": 64, "num_attention_heads": 4},
    "v5_default": {"hidden_size": 64, "num_attention_heads": 4,
                   "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
    "legacy_theta_500k": {"hidden_size": 64, "num_attention_heads": 4, "rope_theta": 500000.0},
    "legacy_llama3": {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 1024,
                      "rope_theta": 500000.0,
                      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 256}},
    "legacy_llama3_type_key": {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 1024,
                               "rope_theta": 500000.0,
                               "rope_scaling": {"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 256}},
    "v5_llama3": {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 1024,
                  "rope_parameters": dict(LLAMA3_ROPE)},
    "llama3_default_original_max": {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 256,
                                    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0}},
    "llama3_top_level_original_max": {"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 1024,
                                      "original_max_position_embeddings": 128,
                                      "rope_parameters": dict(LLAMA3_ROPE)},
    "llama31_8b_shape": {"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 131072,
                         "rope_theta": 500000.0,
                         "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8192, "rope_type": "llama3"}},
    "legacy_linear": {"hidden_size": 64, "num_attention_heads": 4, "rope_theta": 10000.0,
                      "rope_scaling": {"type": "linear", "factor": 4.0}},
    "v5_linear": {"hidden_size": 64, "num_attention_heads": 4,
                  "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}},
    "explicit_head_dim": {"hidden_size": 64, "num_attention_heads": 4, "head_dim": 32, "rope_theta": 10000.0},
    "rope_scaling_wins_over_rope_parameters": {"hidden_size": 64, "num_attention_heads": 4,
                                               "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
                                               "rope_scaling": {"rope_type": "linear", "factor": 2.0,
                                                                "rope_theta": 1000.0}},
}


def write_tokenizer_json_compact(d: Path):
    tokenizers.Tokenizer.from_file(str(d / "tokenizer.json")).save(str(d / "tokenizer.json"), pretty=False)


def tokenization_cases(tokenizer, texts, spm=None):
    cases = []
    for t in texts:
        ids = tokenizer(t)["input_ids"]
        case = {"text": t, "input_ids": ids, "decoded": tokenizer.decode(ids, skip_special_tokens=True)}
        if spm is not None:
            case["sentencepiece_ids"] = [1] + spm.encode(t)
        cases.append(case)
    return cases


def check_lm_head_missing_is_not_tied(d: Path) -> str:
    """What from_pretrained does with an untied config whose file lacks lm_head.weight."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in ["config.json", "model.safetensors"]:
            shutil.copy(d / f, Path(tmp) / f)
        sd = torch_load_file(str(Path(tmp) / "model.safetensors"))
        del sd["lm_head.weight"]
        torch_save_file(sd, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        m = LlamaForCausalLM.from_pretrained(tmp)
        tied = m.lm_head.weight is m.model.embed_tokens.weight or torch.equal(m.lm_head.weight,
                                                                                m.model.embed_tokens.weight)
    assert not tied
    return ("tie_word_embeddings false and no lm_head.weight in the file: from_pretrained reports lm_head.weight "
            "MISSING and initialises it randomly (not tied to embed_tokens)")


def write_llama_tiny():
    d = OUT / "llama-tiny"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)

    # Tokenizer: the real SentencePiece model, converted by transformers.
    spm_path = find_spm_model()
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(spm_path, Path(tmp) / "tokenizer.model")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "add_bos_token": True, "add_eos_token": False, "legacy": False}))
        tokenizer = AutoTokenizer.from_pretrained(tmp, add_bos_token=True)
    assert type(tokenizer).__name__ == "LlamaTokenizer", type(tokenizer)
    tokenizer.save_pretrained(d)
    write_tokenizer_json_compact(d)
    again = AutoTokenizer.from_pretrained(str(d))
    spm = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
    assert spm.encode("Hello world") == [15043, 3186]
    tokenization = tokenization_cases(again, SPM_TEXTS, spm)
    for case in tokenization:
        assert case["input_ids"] == tokenizer(case["text"])["input_ids"], case
        assert case["input_ids"][0] == 1, case

    # Model.
    torch.manual_seed(SEED)
    config = LlamaConfig(**LLAMA_TINY, attn_implementation="eager")
    model = LlamaForCausalLM(config).eval()
    redraw(model, lm_head_std=0.5, out_gain=1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())  # stored in f16: the reference computes with exactly the stored values
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=True,
                                               temperature=0.6, top_p=0.9, max_length=64)
    copy.deepcopy(model).half().save_pretrained(d)  # (half() would also round the model's inv_freq buffer)
    with safe_open(str(d / "model.safetensors"), "np") as f:
        saved = set(f.keys())
        assert all(f.get_tensor(k).dtype == np.float16 for k in saved)
    assert "lm_head.weight" in saved and "model.embed_tokens.weight" in saved

    # config.json in the layout Llama-2 is published in (top-level rope_theta, rope_scaling null).
    cfg = json.loads((d / "config.json").read_text())
    rope = cfg.pop("rope_parameters")
    assert rope == {"rope_theta": 10000.0, "rope_type": "default"}, rope
    cfg["rope_theta"] = rope["rope_theta"]
    cfg["rope_scaling"] = None
    (d / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    reloaded = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
    assert torch.equal(reloaded.model.rotary_emb.inv_freq, model.model.rotary_emb.inv_freq)
    for (n, a), (_, b) in zip(model.named_parameters(), reloaded.named_parameters()):
        assert torch.equal(a, b), n
    gen_cfg = json.loads((d / "generation_config.json").read_text())
    assert gen_cfg["eos_token_id"] == 2 and gen_cfg["pad_token_id"] == 0, gen_cfg

    # Generation first: the "continued" logits case feeds the prompt and its greedy continuation.
    prompts = {name: again(text)["input_ids"] for name, text in
               [("hello", SPM_TEXTS[0]), ("unicode", SPM_TEXTS[1]), ("capital", SPM_TEXTS[2])]}
    generation = {}
    for name, (prompt, kwargs) in {
        "hello_greedy_24": ("hello", dict(max_new_tokens=24, min_new_tokens=24)),
        "unicode_greedy_24": ("unicode", dict(max_new_tokens=24, min_new_tokens=24)),
        "capital_greedy_30": ("capital", dict(max_new_tokens=30)),
    }.items():
        rows, stops, margin = generate_case(reloaded, [prompts[prompt]], [2], 0, kwargs)
        generation[name] = {"prompt": prompt, "input_ids": [prompts[prompt]], "generate_kwargs": kwargs,
                            "eos_token_ids": [2], "pad_token_id": 0, "output_ids": rows, "stops": stops,
                            "min_margin": margin}
        assert len(rows[0]) - len(prompts[prompt]) >= 20 or stops[0] is not None
        assert len(set(rows[0][len(prompts[prompt]):])) >= 4, rows  # not one token repeated

    continued = generation["hello_greedy_24"]["output_ids"][0][:len(prompts["hello"]) + 5]
    tensors, logits_cases = {}, []
    for name, ids, prefill in [("continued", continued, len(prompts["hello"])), ("unicode", prompts["unicode"], 4)]:
        full, cached = full_and_cached(reloaded, ids, prefill)
        assert full.shape == (1, len(ids), 32000)
        tensors[f"logits.{name}"] = full.numpy()
        logits_cases.append({"name": name, "input_ids": ids, "prefill": prefill, "cached_stored": False,
                             "reference_cached_vs_full_rel_l2": rel_l2(cached, full)})
    tensors["inv_freq"] = model.model.rotary_emb.inv_freq.numpy()
    lm_head_note = check_lm_head_missing_is_not_tied(d)
    return d, tensors, {
        "model": "LlamaForCausalLM(LlamaConfig(**config)), weights re-drawn (see the generator's docstring), "
                 "rounded to f16, saved in f16; references computed in f32 with attn_implementation='eager'",
        "config": LLAMA_TINY, "seed": SEED, "tokenization": tokenization, "logits_cases": logits_cases,
        "generation": generation, "lm_head": lm_head_note,
    }


def train_bpe_tokenizer() -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=1, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.splitlines(), trainer)
    assert tok.get_vocab_size() == 1000, tok.get_vocab_size()
    tok.add_special_tokens([tokenizers.AddedToken(s, special=True, normalized=False) for s in LLAMA3_SPECIALS])
    assert [tok.token_to_id(s) for s in LLAMA3_SPECIALS] == list(range(1000, 1005))
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", BOS3)]),
    ])
    return tok


def write_llama3_tiny():
    d = OUT / "llama3-tiny"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)

    fast = PreTrainedTokenizerFast(tokenizer_object=train_bpe_tokenizer(), bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", model_max_length=1024)
    fast.save_pretrained(d)
    write_tokenizer_json_compact(d)
    tokenizer = AutoTokenizer.from_pretrained(str(d))
    tokenization = tokenization_cases(tokenizer, BPE_TEXTS)
    for case in tokenization:
        assert case["input_ids"][0] == BOS3, case
        assert case["decoded"] == case["text"], case  # byte-level: decode gives the text back

    torch.manual_seed(LLAMA3_SEED)
    config = LlamaConfig(**LLAMA3_TINY, attn_implementation="eager")
    model = LlamaForCausalLM(config).eval()
    redraw(model, lm_head_std=0.0, out_gain=OUT_GAIN)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    eot_note = place_eot(model, tokenizer(BPE_TEXTS[2])["input_ids"])
    model.generation_config = GenerationConfig(bos_token_id=BOS3, eos_token_id=[EOS3, EOT3])
    model.save_pretrained(d)
    with safe_open(str(d / "model.safetensors"), "np") as f:
        saved = set(f.keys())
        assert all(f.get_tensor(k).dtype == np.float32 for k in saved)
    assert "lm_head.weight" not in saved and "model.embed_tokens.weight" in saved
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["rope_parameters"] == LLAMA3_ROPE and cfg["tie_word_embeddings"] is True, cfg
    assert "rope_scaling" not in cfg and "rope_theta" not in cfg, cfg
    gen_cfg = json.loads((d / "generation_config.json").read_text())
    assert gen_cfg["eos_token_id"] == [EOS3, EOT3], gen_cfg
    reloaded = LlamaForCausalLM.from_pretrained(str(d), attn_implementation="eager").eval()
    assert reloaded.lm_head.weight is reloaded.model.embed_tokens.weight

    texts = {"cat": BPE_TEXTS[0], "unicode": BPE_TEXTS[1], "capital": BPE_TEXTS[2], "japanese": BPE_TEXTS[3]}
    prompts = {k: tokenizer(t)["input_ids"] for k, t in texts.items()}
    tensors, logits_cases = {}, []
    for name, ids in prompts.items():
        prefill = max(1, len(ids) // 2)
        full, cached = full_and_cached(reloaded, ids, prefill)
        tensors[f"logits.{name}"] = full.numpy()
        tensors[f"cached_logits.{name}"] = cached.numpy()
        logits_cases.append({"name": name, "input_ids": ids, "prefill": prefill, "cached_stored": True,
                             "reference_cached_vs_full_rel_l2": rel_l2(cached, full)})

    eos = [EOS3, EOT3]
    generation = {}
    # Two batches of equal-length rows (generate() pads nothing): the first row of each is a real prompt, the
    # second a spliced id sequence of the same length.
    prompts["unicode7"] = prompts["unicode"][:len(prompts["cat"])]
    prompts["unicode_cat"] = prompts["unicode"] + prompts["cat"][1:1 + len(prompts["capital"]) - len(prompts["unicode"])]
    assert len(prompts["unicode_cat"]) == len(prompts["capital"])
    cases = {
        "cat_greedy_24": (["cat"], eos, dict(max_new_tokens=24, min_new_tokens=24)),
        "unicode_greedy_24": (["unicode"], eos, dict(max_new_tokens=24, min_new_tokens=24)),
        "japanese_greedy_24": (["japanese"], eos, dict(max_new_tokens=24, min_new_tokens=24)),
        "capital_greedy_stops": (["capital"], eos, dict(max_new_tokens=40)),
        "batch_greedy_24": (["cat", "unicode7"], eos, dict(max_new_tokens=24, min_new_tokens=24)),
        "batch_greedy_one_stops": (["capital", "unicode_cat"], eos, dict(max_new_tokens=12)),
        "cat_beam3": (["cat"], [EOS3], dict(max_new_tokens=12, num_beams=3, length_penalty=1.0,
                                            early_stopping=False)),
    }
    for name, (rows_of, eos_ids, kwargs) in cases.items():
        ids_rows = [prompts[p] for p in rows_of]
        rows, stops, margin = generate_case(reloaded, ids_rows, eos_ids, eos_ids[0], kwargs)
        generation[name] = {"prompts": rows_of, "input_ids": ids_rows, "generate_kwargs": kwargs,
                            "eos_token_ids": eos_ids, "pad_token_id": eos_ids[0], "output_ids": rows,
                            "stops": stops, "min_margin": margin}
    stop = generation["capital_greedy_stops"]["stops"][0]
    assert stop is not None and stop["token"] == EOT3, ("greedy should stop on <|eot_id|>", stop)
    stops = generation["batch_greedy_one_stops"]["stops"]
    assert stops[0] == stop and stops[1] is None, stops
    assert len(generation["batch_greedy_one_stops"]["output_ids"][0]) == len(prompts["capital"]) + 12
    for name in ["cat_greedy_24", "unicode_greedy_24", "japanese_greedy_24"]:
        row = generation[name]["output_ids"][0][len(generation[name]["input_ids"][0]):]
        assert len(row) == 24 and len(set(row)) >= 4, (name, row)
    tensors["inv_freq"] = model.model.rotary_emb.inv_freq.numpy()
    return d, tensors, {
        "model": "LlamaForCausalLM(LlamaConfig(**config)) with a tied head, weights re-drawn (see the generator's "
                 "docstring); saved in f32; references computed with attn_implementation='eager'",
        "eot_row": eot_note,
        "config": LLAMA3_TINY, "seed": LLAMA3_SEED, "special_tokens": dict(zip(LLAMA3_SPECIALS, range(1000, 1005))),
        "tokenization": tokenization, "logits_cases": logits_cases, "generation": generation,
    }


def finish(d: Path, tensors: dict, meta: dict):
    for k, v in tensors.items():
        assert v.dtype == np.float32, (k, v.dtype)
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, str(d / "reference.safetensors"))
    meta = {
        **meta,
        "inv_freq_variants": {name: {"config": c, "inv_freq": inv_freq_of(c)} for name, c in INV_FREQ_VARIANTS.items()},
        "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(tensors.items())},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
        "sentencepiece_version": sentencepiece.__version__,
    }
    (d / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def main():
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    # Variants must agree: the legacy and the transformers 5 layouts give the same frequencies.
    v = {name: inv_freq_of(c) for name, c in INV_FREQ_VARIANTS.items()}
    assert v["legacy_default"] == v["v5_default"] == v["no_rope_keys"]
    assert v["legacy_llama3"] == v["legacy_llama3_type_key"] == v["v5_llama3"]
    assert v["legacy_linear"] == v["v5_linear"]
    assert v["llama3_top_level_original_max"] != v["v5_llama3"]
    for d, tensors, meta in [write_llama_tiny(), write_llama3_tiny()]:
        finish(d, tensors, meta)
        size = sum(f.stat().st_size for f in d.iterdir())
        print(f"{d.relative_to(ROOT.parent)}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
