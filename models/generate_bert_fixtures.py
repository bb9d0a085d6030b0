#!/usr/bin/env python3
"""Generate Lens's sentence-embedder (BERT) reference fixture with the reference implementation, offline.

Run from the repository root (after models/setup-reference.sh; no network is needed or used):

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/generate_bert_fixtures.py

Reference implementation: transformers 5.23.0 (transformers/models/bert/modeling_bert.py: BertEmbeddings,
BertSelfAttention with the eager attention, BertLayer, BertModel), tokenizers 0.23.3, torch 2.15.0 (CPU, 2
threads). Sentence embeddings are computed as sentence-transformers/all-MiniLM-L6-v2 publishes them (its
modules.json: Transformer -> Pooling(mean) -> Normalize), in the form its model card gives for plain
transformers: token states averaged over the attention mask, then L2-normalised.

Writes models/fixtures/minilm-tiny/ in the layout sentence-transformers models are published in:
  config.json                 a tiny random BertModel: hidden 32, 2 layers, 4 heads, intermediate 37 (not a
                              multiple of anything), vocab 30522, 64 positions, 2 token types, gelu, eps 1e-12
  model.safetensors           f32, with the pooler (BertModel's default, as all-MiniLM-L6-v2 ships it; unused)
  tokenizer.json, tokenizer_config.json, vocab.txt
                              bert-base-uncased WordPiece (shared/reference/tokenizers/bert), as MiniLM uses it
  modules.json, sentence_bert_config.json (max_seq_length 24), 1_Pooling/config.json (mean tokens)
  reference.json              the texts, their ids and attention masks (padded to the longest, truncated at 24)
  reference.safetensors       last_hidden_state [n, seq, 32] and sentence_embedding [n, 32], f32

Weights: seeded; after construction every parameter is re-drawn in named_parameters order (LayerNorm weights
N(1, 0.1), biases N(0, 0.1), matrices N(0, 1/sqrt(fan_in)), embeddings N(0, 1)) so that every layer moves the
states and a wrong mask, pooling or norm shows. Re-running reproduces the files on one machine; across CPUs the
float outputs differ in the last bits, far inside the test's tolerance (1e-4).
"""

import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "fixtures", "minilm-tiny")
TOKENIZER = os.path.join(os.path.dirname(ROOT), "shared", "reference", "tokenizers", "bert")
MAX_SEQ_LENGTH = 24

TEXTS = [
    "a photo of a cat",
    "Aspirin is used to reduce fever and relieve mild to moderate pain.",
    "The mitochondria is the powerhouse of the cell.",
    "Café AU LAIT, naïve résumé!",
    "",
    # Longer than MAX_SEQ_LENGTH tokens: truncated, [SEP] kept last.
    "Insulin is a peptide hormone produced by beta cells of the pancreatic islets; it regulates the "
    "metabolism of carbohydrates, fats and protein by promoting the absorption of glucose from the blood.",
]


def redraw(model, generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("LayerNorm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
            elif "embeddings" in name:
                p.copy_(torch.randn(p.shape, generator=generator))
            else:
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p.shape[-1]))


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1234)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        pad_token_id=0,
        attn_implementation="eager",
    )
    model = BertModel(config).eval()
    redraw(model, generator)

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "1_Pooling"))
    model.config.architectures = ["BertModel"]
    model.config.save_pretrained(OUT)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, "model.safetensors"),
              metadata={"format": "pt"})
    for name in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]:
        shutil.copyfile(os.path.join(TOKENIZER, name), os.path.join(OUT, name))
    with open(os.path.join(OUT, "modules.json"), "w") as f:
        json.dump([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], f, indent=2)
    with open(os.path.join(OUT, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False}, f, indent=2)
    with open(os.path.join(OUT, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": config.hidden_size, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False}, f, indent=2)

    tokenizer = AutoTokenizer.from_pretrained(OUT)
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
    assert tokenizer("a photo of a cat")["input_ids"] == [101, 1037, 6302, 1997, 1037, 4937, 102]
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"])
    states = out.last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
    mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    embedding = torch.nn.functional.normalize(mean, p=2, dim=1)

    save_file({"last_hidden_state": states.contiguous(), "sentence_embedding": embedding.contiguous()},
              os.path.join(OUT, "reference.safetensors"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({
            "texts": TEXTS,
            "max_seq_length": MAX_SEQ_LENGTH,
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
            "versions": {"transformers": __import__("transformers").__version__, "torch": torch.__version__},
        }, f, indent=1)
    print(f"wrote {OUT}: {len(TEXTS)} texts, seq {states.shape[1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
