#!/usr/bin/env python3
"""LLaMA checkpoints in GGUF, and what transformers makes of them (crates/lens-models/src/llama/gguf/).

Run from the repository root, after models/generate_llama_fixtures.py (it reads models/fixtures/llama-tiny and
models/fixtures/llama3-tiny) and with the reference venv (models/requirements-reference.txt: gguf 0.19.0,
transformers 5.23.0, torch 2.15.0, sentencepiece, protobuf):

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/generate_gguf_llama_fixtures.py

Writes, under models/fixtures/gguf-llama/ (seeded, deterministic):

llama-tiny.gguf   models/fixtures/llama-tiny (LLaMA-2 style: hidden 32, GQA 4/2, untied head, the LLaMA SentencePiece
                  vocabulary of 32,000 pieces) written as llama.cpp's convert_hf_to_gguf.py writes a LLaMA
                  (`LlamaModel`: the q/k rows permuted with its `permute`, its metadata keys, `_set_vocab_sentencepiece`
                  + `gguf.SpecialVocab` for the tokenizer), by gguf-py's GGUFWriter. Tensor types: token_embd and output
                  Q8_0, in each layer some matrices F16 and the others Q8_0 (q is F16 in layer 0 and Q8_0 in layer 1, k
                  the other way round), norms F32. Rows of 32 cannot be K-quants (blocks of 256).
llama3-q4km.gguf  a LLaMA-3-style model whose rows are multiples of 256 (hidden 256, intermediate 512, 4 heads of 64,
                  2 key/value heads, 2 layers, tied embeddings, `llama3` rope as convert_hf_to_gguf.py writes it: a
                  `rope_freqs.weight` tensor and no scaling keys) with llama3-tiny's byte-level BPE tokenizer
                  (`tokenizer.ggml.model` gpt2, `pre` llama-bpe, vocab 1024 with [PADn] fillers as get_vocab_base
                  writes them, an `eot_token_id`). Quantized as llama-quantize's Q4_K_M mixes types: Q4_K for most
                  matrices, Q6_K for token_embd (tied: llama.cpp gives it the output's type) and for attn_v / ffn_down of
                  layer 0, Q5_K for ffn_up of layer 0 and attn_output of layer 1, F32 norms. gguf-py cannot quantize
                  K-quants, so the blocks are random bytes with sane f16 scales (`k_quant_tensor`): the values the
                  file holds are the weights.
reference.safetensors  f32: `<file>.logits.<case>` [1, seq, vocab], transformers' logits at every position;
                  `llama-tiny.hf.<name>` the q_proj / k_proj weights transformers loaded (its reverse permutation).
reference.json    per file: the config transformers built, the tensor types, the logits cases (text, ids); the
                  tokenizer cases: text -> AutoTokenizer(..., gguf_file=...) ids with and without special tokens, and
                  its decode; for llama-tiny, llama.cpp's reference ids (below) and which of them transformers agrees
                  with.
ggml-vocab-llama-spm.gguf.inp / .out
                  llama.cpp's tokenizer test for its LLaMA SentencePiece vocabulary (models/ at llama.cpp commit
                  c392e5094deaf2d1a7c18683214f007fad3fe42b, 2025-02-20; MIT), copied unchanged. Our SPM vocabulary is
                  that one (shared/reference/tokenizers/llama-spm/tokenizer.model was rebuilt from
                  ggml-vocab-llama-spm.gguf; this script checks the tokens, scores and types it writes equal that file's
                  when it is given, see LLAMA_CPP_SPM_GGUF). The ids are without BOS (test-tokenizer-0 tokenizes with
                  add_special false). llama.cpp's ggml-vocab-llama-bpe ids are for Llama 3's 128k vocabulary, not ours,
                  so they do not apply.

What transformers does with a LLaMA GGUF (transformers 5.23.0, modeling_gguf_pytorch_utils.py `load_gguf_checkpoint`
and integrations/gguf/gguf_tokenizer_mapping.py): config from `llama.*` keys (context_length, embedding_length, ...,
rope.dimension_count -> head_dim, rope.freq_base -> rope_theta; no rope scaling key is read and `rope_freqs.weight` is
ignored, so llama3 rope loads as default rope), vocab_size from `llama.vocab_size` else the token count, bos/eos/pad ids
from `tokenizer.ggml.*`, tie_word_embeddings when there is no `output.weight`; every tensor dequantized by gguf-py and
attn_q / attn_k rows un-permuted (`LlamaTensorProcessor._reverse_permute_weights`).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np
import sentencepiece
import torch
import transformers
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent  # models/
FIXTURES = ROOT / "fixtures"
OUT = FIXTURES / "gguf-llama"
SEED = 1213
# llama.cpp's files (copied into OUT by this script when given): LLAMA_CPP_MODELS=<llama.cpp>/models
LLAMA_CPP_MODELS = os.environ.get("LLAMA_CPP_MODELS")


def find_spm_model() -> Path:
    for base in [ROOT.parent, ROOT.parent.parent]:
        f = base / "shared" / "reference" / "tokenizers" / "llama-spm" / "tokenizer.model"
        if f.is_file():
            return f
    raise SystemExit("shared/reference/tokenizers/llama-spm/tokenizer.model not found (next to or inside the repo)")


# convert_hf_to_gguf.py, LlamaModel.permute (llama.cpp c392e5094).
def permute(weights: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def gguf_name(hf: str) -> str:
    """convert_hf_to_gguf's tensor names for a LLaMA (gguf-py's TensorNameMap)."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf in fixed:
        return fixed[hf]
    parts = hf.split(".")
    assert parts[:2] == ["model", "layers"], hf
    bid, rest = parts[2], ".".join(parts[3:])
    return f"blk.{bid}." + {
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight", "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
    }[rest]


def add_tensor(writer: gguf.GGUFWriter, name: str, values: np.ndarray, qtype: T) -> None:
    """`values` (f32, PyTorch shape) stored as `qtype`; GGUFWriter reverses the shape into GGUF order."""
    if qtype == T.F32:
        writer.add_tensor(name, values.astype(np.float32))
    elif qtype == T.F16:
        writer.add_tensor(name, values.astype(np.float16))
    else:
        data = quantize(values.astype(np.float32), qtype)
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)


def add_raw(writer: gguf.GGUFWriter, name: str, blocks: np.ndarray, qtype: T) -> None:
    writer.add_tensor(name, blocks, raw_shape=blocks.shape, raw_dtype=qtype)


def write_tokenizer_sentencepiece(writer: gguf.GGUFWriter, model_dir: Path, vocab_size: int) -> None:
    """convert_hf_to_gguf.py `_set_vocab_sentencepiece` / `_create_vocab_sentencepiece` (no added tokens)."""
    spm = sentencepiece.SentencePieceProcessor()
    spm.LoadFromFile(str(model_dir / "tokenizer.model"))
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    toktypes = [gguf.TokenType.UNUSED] * vocab_size
    for i in range(spm.vocab_size()):
        toktype = gguf.TokenType.NORMAL
        if spm.IsUnknown(i):
            toktype = gguf.TokenType.UNKNOWN
        elif spm.IsControl(i):
            toktype = gguf.TokenType.CONTROL
        elif spm.IsUnused(i):
            toktype = gguf.TokenType.UNUSED
        elif spm.IsByte(i):
            toktype = gguf.TokenType.BYTE
        tokens[i], scores[i], toktypes[i] = spm.IdToPiece(i).encode(), spm.GetScore(i), toktype
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(toktypes)
    gguf.SpecialVocab(model_dir, n_vocab=len(tokens)).add_to_gguf(writer)
    check_against_llama_cpp_spm(tokens, scores, toktypes)


def check_against_llama_cpp_spm(tokens, scores, toktypes) -> None:
    if not LLAMA_CPP_MODELS:
        return
    reader = gguf.GGUFReader(str(Path(LLAMA_CPP_MODELS) / "ggml-vocab-llama-spm.gguf"))
    f = reader.fields
    theirs = [bytes(f["tokenizer.ggml.tokens"].parts[i]) for i in f["tokenizer.ggml.tokens"].data]
    their_scores = [float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data]
    their_types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    assert theirs == tokens, "tokens differ from llama.cpp's ggml-vocab-llama-spm.gguf"
    assert their_scores == [float(np.float32(s)) for s in scores], "scores differ"
    assert their_types == [int(t) for t in toktypes], "token types differ"
    print("SentencePiece vocabulary == llama.cpp's ggml-vocab-llama-spm.gguf (tokens, scores, types)")


def write_llama_tiny(path: Path) -> dict:
    src = FIXTURES / "llama-tiny"
    cfg = json.loads((src / "config.json").read_text())
    state = load_file(str(src / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    f16_in_layer = {0: {"attn_q", "attn_v", "ffn_gate", "ffn_down"}, 1: {"attn_k", "attn_output", "ffn_up"}}
    types = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        shutil.copy(find_spm_model(), model_dir / "tokenizer.model")
        for name in ["config.json", "tokenizer.json", "generation_config.json"]:
            shutil.copy(src / name, model_dir / name)
        # meta-llama/Llama-2-7b-hf's tokenizer_config.json flags and tokens (what SpecialVocab reads).
        (model_dir / "tokenizer_config.json").write_text(json.dumps({
            "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "pad_token": None, "tokenizer_class": "LlamaTokenizer"}))
        writer = gguf.GGUFWriter(str(path), "llama")
        # Model.set_gguf_parameters + LlamaModel.set_gguf_parameters, in their order.
        writer.add_name("llama-tiny")
        writer.add_block_count(cfg["num_hidden_layers"])
        writer.add_context_length(cfg["max_position_embeddings"])
        writer.add_embedding_length(cfg["hidden_size"])
        writer.add_feed_forward_length(cfg["intermediate_size"])
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_freq_base(cfg["rope_theta"])
        writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        writer.add_key_length(cfg["head_dim"])
        writer.add_value_length(cfg["head_dim"])
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
        writer.add_vocab_size(cfg["vocab_size"])
        writer.add_rope_dimension_count(cfg["head_dim"])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        write_tokenizer_sentencepiece(writer, model_dir, cfg["vocab_size"])
        for hf, value in state.items():
            value = value.astype(np.float32)
            if hf.endswith("q_proj.weight"):
                value = permute(value, n_head, n_head)
            elif hf.endswith("k_proj.weight"):
                value = permute(value, n_head, n_kv)
            name = gguf_name(hf)
            if value.ndim == 1:
                qtype = T.F32
            elif name in ("token_embd.weight", "output.weight"):
                qtype = T.Q8_0
            else:
                bid, kind = int(name.split(".")[1]), name.split(".")[2]
                qtype = T.F16 if kind in f16_in_layer[bid] else T.Q8_0
            add_tensor(writer, name, value, qtype)
            types[name] = qtype.name
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return types


# ------------------------------------------------------------------------------------------------
# The Q4_K_M-like LLaMA 3
# ------------------------------------------------------------------------------------------------

LLAMA3 = dict(vocab_size=1024, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=64, max_position_embeddings=1024, rms_norm_eps=1e-5,
              rope_theta=500000.0, rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                     high_freq_factor=4.0, original_max_position_embeddings=256))


def f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float16).view(np.uint8).reshape(*np.shape(x), 2)


def k_quant_tensor(rng: np.random.Generator, qtype: T, rows: int, cols: int, std: float) -> np.ndarray:
    """Random `qtype` blocks for a [rows, cols] matrix whose values have about this standard deviation and mean 0.

    Quants and packed 6-bit scales are random bytes. Each block's d is f16 `base * exp(N(0, 0.25))`, base chosen so
    the values have `std`; Q4_K / Q5_K's dmin is d times the mean quant (7.5 / 15.5), so that `d * sc * q - dmin * m`
    is centred (sc and m are both uniform in 0..63); Q6_K is `d * sc * (q - 32)` with signed sc, already centred.
    """
    n_blocks = rows * cols // 256
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    # RMS of the values for d = 1 (sc, m, q uniform): found by the formulas below, then scaled.
    jitter = np.exp(rng.normal(0.0, 0.25, size=n_blocks))
    if qtype in (T.Q4_K, T.Q5_K):
        levels = 16 if qtype == T.Q4_K else 32
        # E[(sc q - mean_q m)^2] with sc, m ~ U{0..63}, q ~ U{0..levels-1}
        mean_q = (levels - 1) / 2
        e_sc2 = np.mean(np.arange(64) ** 2)
        var_q = (levels ** 2 - 1) / 12
        rms1 = math.sqrt(e_sc2 * (var_q + mean_q ** 2) - 2 * mean_q * 31.5 * 31.5 * mean_q + mean_q ** 2 * e_sc2)
        d = std / rms1 * jitter
        blocks[:, 0:2] = f16(d)
        blocks[:, 2:4] = f16(d * mean_q)
    else:  # Q6_K: ql[128] qh[64] scales[16] (i8) d (f16)
        e_sc2 = np.mean(np.arange(-128, 128) ** 2)
        rms1 = math.sqrt(e_sc2 * np.mean((np.arange(64) - 32.0) ** 2))
        blocks[:, size - 2:] = f16(std / rms1 * jitter)
    return blocks.reshape(rows, cols // 256 * size)


def dequantized(blocks: np.ndarray, qtype: T) -> np.ndarray:
    return np.asarray(dequantize(blocks, qtype), dtype=np.float32)


def rope_freqs(cfg: dict) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.generate_extra_tensors for `llama3` rope."""
    rs = cfg["rope_scaling"]
    base, dim = cfg["rope_theta"], cfg["head_dim"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32).numpy()


def bpe_vocab(model_dir: Path, vocab_size: int):
    """convert_hf_to_gguf.py `get_vocab_base`: tokens by id, [PADn] (UNUSED) where the tokenizer has none, added
    special tokens CONTROL."""
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    reverse = {i: t for t, i in tok.get_vocab().items()}
    added = tok.get_added_vocab()
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            t = reverse[i]
            if t in added:
                assert tok.added_tokens_decoder[i].special
                types.append(gguf.TokenType.CONTROL)
            else:
                types.append(gguf.TokenType.NORMAL)
            tokens.append(t)
    return tokens, types


def write_llama3_q4km(path: Path, rng: np.random.Generator) -> dict:
    cfg = LLAMA3
    hidden, inter, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    src = FIXTURES / "llama3-tiny"
    types = {}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("llama3-q4km")
    writer.add_block_count(cfg["num_hidden_layers"])
    writer.add_context_length(cfg["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(inter)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_freq_base(cfg["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    writer.add_key_length(hd)
    writer.add_value_length(hd)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_vocab_size(cfg["vocab_size"])
    writer.add_rope_dimension_count(hd)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # _set_vocab_gpt2, with the pre-tokenizer name of Llama 3 (our vocabulary was trained with its split regex).
    tokens, toktypes = bpe_vocab(src, cfg["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(toktypes)
    gguf.SpecialVocab(src, load_merges=True).add_to_gguf(writer)
    writer.add_eot_token_id(tokens.index("<|eot_id|>"))

    def matrix(name, qtype, rows, cols, std):
        blocks = k_quant_tensor(rng, qtype, rows, cols, std)
        add_raw(writer, name, blocks, qtype)
        types[name] = qtype.name

    def norm(name, n):
        add_tensor(writer, name, rng.normal(1.0, 0.1, size=n).astype(np.float32), T.F32)
        types[name] = "F32"

    add_tensor(writer, "rope_freqs.weight", rope_freqs(cfg), T.F32)
    types["rope_freqs.weight"] = "F32"
    matrix("token_embd.weight", T.Q6_K, cfg["vocab_size"], hidden, 1.0)
    mix = {0: dict(attn_v=T.Q6_K, ffn_down=T.Q6_K, ffn_up=T.Q5_K), 1: dict(attn_output=T.Q5_K)}
    for i in range(cfg["num_hidden_layers"]):
        q = lambda kind: mix[i].get(kind, T.Q4_K)  # noqa: E731
        norm(f"blk.{i}.attn_norm.weight", hidden)
        matrix(f"blk.{i}.attn_q.weight", q("attn_q"), n_head * hd, hidden, 1 / math.sqrt(hidden))
        matrix(f"blk.{i}.attn_k.weight", q("attn_k"), n_kv * hd, hidden, 1 / math.sqrt(hidden))
        matrix(f"blk.{i}.attn_v.weight", q("attn_v"), n_kv * hd, hidden, 1 / math.sqrt(hidden))
        matrix(f"blk.{i}.attn_output.weight", q("attn_output"), hidden, n_head * hd, 2 / math.sqrt(hidden))
        norm(f"blk.{i}.ffn_norm.weight", hidden)
        matrix(f"blk.{i}.ffn_gate.weight", q("ffn_gate"), inter, hidden, 1 / math.sqrt(hidden))
        matrix(f"blk.{i}.ffn_up.weight", q("ffn_up"), inter, hidden, 1 / math.sqrt(hidden))
        matrix(f"blk.{i}.ffn_down.weight", q("ffn_down"), hidden, inter, 2 / math.sqrt(inter))
    norm("output_norm.weight", hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types


# ------------------------------------------------------------------------------------------------
# References
# ------------------------------------------------------------------------------------------------

SPM_TEXTS = ["Hello world", "héllo wörld 日本 🦙", "The capital of France is", "\n\nfoo  bar\tbaz",
             " leading space", "I'm 100% sure: it's €42.", "", "ΑΒΓ абв ﷺ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "<s> and </s> inside"]
BPE_TEXTS = ["A photo of a cat", "Grüße aus München! 🦙🚀", "The capital of France is", "日本語のテキスト",
             "fn main() { println!(\"{x}\"); }", "  two  spaces\nand a newline", "", "I'm 100% sure: it's €42.",
             "<|begin_of_text|>hi<|eot_id|>", "[PAD1010] x"]


def llama_cpp_cases() -> list[tuple[str, list[int]]]:
    inp = (OUT / "ggml-vocab-llama-spm.gguf.inp").read_text(encoding="utf-8")
    out = (OUT / "ggml-vocab-llama-spm.gguf.out").read_text(encoding="utf-8")
    texts = inp.split("\n__ggml_vocab_test__\n")
    assert texts[-1] == "", "the .inp ends with a separator"
    texts = texts[:-1]
    ids = [[int(t) for t in line.split()] for line in out.split("\n")[:-1]]
    assert len(texts) == len(ids), (len(texts), len(ids))
    return list(zip(texts, ids))


def tokenization(tokenizer, texts) -> list[dict]:
    cases = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        plain = tokenizer(text, add_special_tokens=False)["input_ids"]
        cases.append({"text": text, "input_ids": ids, "input_ids_no_special": plain,
                      "decoded": tokenizer.decode(ids, skip_special_tokens=True)})
    return cases


def reference(d: Path, file: str, prompts: dict, tensors: dict) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(str(d), gguf_file=file)
    model = LlamaForCausalLM.from_pretrained(str(d), gguf_file=file, dtype=torch.float32,
                                             attn_implementation="eager").eval()
    cases = []
    for name, text in prompts.items():
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits
        tensors[f"{file}.logits.{name}"] = logits.numpy().astype(np.float32)
        cases.append({"name": name, "text": text, "input_ids": ids})
    c = model.config
    config = {k: getattr(c, k) for k in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads", "head_dim",
                                         "max_position_embeddings", "rms_norm_eps", "bos_token_id", "eos_token_id",
                                         "pad_token_id", "tie_word_embeddings"]}
    config["rope_parameters"] = dict(c.rope_parameters)
    config["inv_freq"] = model.model.rotary_emb.inv_freq.tolist()
    return {"config": config, "logits_cases": cases, "model": model, "tokenizer": tokenizer}


def main():
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    OUT.mkdir(parents=True, exist_ok=True)
    for f in OUT.glob("*.gguf"):
        f.unlink()
    if LLAMA_CPP_MODELS:
        for name in ["ggml-vocab-llama-spm.gguf.inp", "ggml-vocab-llama-spm.gguf.out"]:
            shutil.copy(Path(LLAMA_CPP_MODELS) / name, OUT / name)
    rng = np.random.default_rng(SEED)
    tensors, meta = {}, {}

    types = write_llama_tiny(OUT / "llama-tiny.gguf")
    ref = reference(OUT, "llama-tiny.gguf", {"hello": SPM_TEXTS[0], "capital": "The capital"}, tensors)
    sd = ref["model"].state_dict()
    for i in range(2):
        for proj in ["q_proj", "k_proj"]:
            key = f"model.layers.{i}.self_attn.{proj}.weight"
            tensors[f"llama-tiny.hf.{key}"] = sd[key].numpy().astype(np.float32)
    # Un-permuted F16 rows are the checkpoint's exactly.
    original = load_file(str(FIXTURES / "llama-tiny" / "model.safetensors"))
    assert np.array_equal(sd["model.layers.0.self_attn.q_proj.weight"].numpy(),
                          original["model.layers.0.self_attn.q_proj.weight"].astype(np.float32))
    assert np.array_equal(sd["model.layers.1.self_attn.k_proj.weight"].numpy(),
                          original["model.layers.1.self_attn.k_proj.weight"].astype(np.float32))
    tok = ref["tokenizer"]
    spm_cases = tokenization(tok, SPM_TEXTS)
    llama_cpp = []
    for i, (text, ids) in enumerate(llama_cpp_cases()):
        ours = tok(text, add_special_tokens=False)["input_ids"]
        llama_cpp.append({"index": i, "text": text, "llama_cpp_ids": ids, "transformers_ids": ours,
                          "agree": ours == ids})
    meta["llama-tiny.gguf"] = {"config": ref["config"], "tensor_types": types, "logits_cases": ref["logits_cases"],
                               "tokenization": spm_cases, "llama_cpp_spm": llama_cpp}

    types = write_llama3_q4km(OUT / "llama3-q4km.gguf", rng)
    ref = reference(OUT, "llama3-q4km.gguf", {"cat": BPE_TEXTS[0], "unicode": BPE_TEXTS[1],
                                              "capital": BPE_TEXTS[2]}, tensors)
    meta["llama3-q4km.gguf"] = {"config": ref["config"], "tensor_types": types,
                                "logits_cases": ref["logits_cases"], "tokenization": tokenization(ref["tokenizer"],
                                                                                                    BPE_TEXTS)}
    # What the logits look like (sane scales: not all equal, not huge).
    for k, v in tensors.items():
        if ".logits." in k:
            print(f"{k}: shape {v.shape}, std {v.std():.3f}, max |x| {np.abs(v).max():.2f}")

    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, str(OUT / "reference.safetensors"))
    meta = {
        **meta,
        "generator": "models/generate_gguf_llama_fixtures.py",
        "seed": SEED,
        "llama_cpp_files": "ggml-vocab-llama-spm.gguf.inp/.out from llama.cpp models/ at commit "
                           "c392e5094deaf2d1a7c18683214f007fad3fe42b (MIT), unchanged",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "gguf": "0.19.0", "sentencepiece": sentencepiece.__version__},
    }
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    total = sum(f.stat().st_size for f in OUT.iterdir())
    print(f"{OUT.relative_to(ROOT.parent)}: {total / 1e6:.2f} MB")
    agree = sum(c["agree"] for c in llama_cpp)
    print(f"llama.cpp SPM ids: transformers agrees on {agree} of {len(llama_cpp)}")
    for c in llama_cpp:
        if not c["agree"]:
            print("  differs:", repr(c["text"][:40]), c["llama_cpp_ids"][:8], c["transformers_ids"][:8])


if __name__ == "__main__":
    sys.exit(main())
