#!/usr/bin/env python3
"""Reference hidden states of the tiny CLIP fixtures: every layer of both towers, as
`output_hidden_states=True` returns them. Offline and deterministic; reads only committed fixtures.

Run from the repository root (after models/setup-reference.sh; no network is needed or used):

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/generate_hidden_states.py

Inputs (written by models/generate_fixtures.py, not rewritten here): the checkpoints in
models/fixtures/clip-tiny-quickgelu/ and models/fixtures/clip-tiny-gelu/, and in each one's
reference.safetensors the preprocessed images (`pixel_values`, 4 fixture images) and the tokenized
texts (`input_ids`, `attention_mask`, 8 texts padded to 77).

Writes models/fixtures/<model>/hidden_states.safetensors, all float32:

    vision_hidden_states.{i}   [4, 1 + (image_size / patch_size)^2, vision hidden]   i = 0..=num_hidden_layers
    text_hidden_states.{i}     [8, 77, text hidden]                                  i = 0..=num_hidden_layers

from `model.vision_model(pixel_values, output_hidden_states=True)` and `model.text_model(input_ids,
attention_mask, output_hidden_states=True)` (transformers 5.23.0, `CLIPVisionTransformer` /
`CLIPTextTransformer` of `CLIPModel`). State 0 is the encoder's input (vision: the embeddings after
`pre_layrnorm`; text: token + position embeddings), state i the output of encoder layer i; none has
`post_layernorm` / `final_layer_norm` applied (`capture_outputs(tie_last_hidden_states=False)`). The
safetensors metadata key "reference" holds a JSON object with the versions and the layer counts.
Re-running gives the same bytes (checked: two runs, identical sha256).
"""

import json
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file
from transformers import CLIPModel

ROOT = Path(__file__).resolve().parent  # models/
FIXTURES = ROOT / "fixtures"
MODELS = ["clip-tiny-quickgelu", "clip-tiny-gelu"]
OUT_NAME = "hidden_states.safetensors"


def write_hidden_states(name: str) -> dict:
    d = FIXTURES / name
    reference = load_file(str(d / "reference.safetensors"))
    model = CLIPModel.from_pretrained(str(d), local_files_only=True).eval()
    pixel_values = torch.from_numpy(reference["pixel_values"])
    input_ids = torch.from_numpy(reference["input_ids"])
    attention_mask = torch.from_numpy(reference["attention_mask"])
    with torch.no_grad():
        vision = model.vision_model(pixel_values=pixel_values, output_hidden_states=True)
        text = model.text_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    tensors = {}
    for tower, out, config in [("vision", vision, model.config.vision_config),
                               ("text", text, model.config.text_config)]:
        states = out.hidden_states
        assert len(states) == config.num_hidden_layers + 1, (tower, len(states))
        # The committed last_hidden_state comes from the same weights and inputs.
        last = reference[f"{tower}_last_hidden_state"]
        if tower == "vision":
            # No norm after the encoder: the last hidden state is last_hidden_state itself.
            assert torch.equal(states[-1], out.last_hidden_state)
            assert np.abs(states[-1].numpy() - last).max() < 1e-5
        else:
            # last_hidden_state is final_layer_norm(hidden_states[-1]); hidden_states[-1] is not normed.
            assert torch.allclose(model.text_model.final_layer_norm(states[-1]), out.last_hidden_state, atol=1e-6)
            assert not torch.allclose(states[-1], out.last_hidden_state, atol=1e-3)
            assert np.abs(out.last_hidden_state.numpy() - last).max() < 1e-5
        for i, s in enumerate(states):
            tensors[f"{tower}_hidden_states.{i}"] = np.ascontiguousarray(s.numpy().astype(np.float32))
    # hidden_states[0] of the vision tower is pre_layrnorm(embeddings(pixel_values)).
    with torch.no_grad():
        embeds = model.vision_model.pre_layrnorm(model.vision_model.embeddings(pixel_values))
    assert torch.equal(embeds, torch.from_numpy(tensors["vision_hidden_states.0"]))
    meta = {
        "model": name,
        "inputs": "pixel_values, input_ids, attention_mask of reference.safetensors",
        "vision_layers": str(model.config.vision_config.num_hidden_layers),
        "text_layers": str(model.config.text_config.num_hidden_layers),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    # One metadata key: safetensors writes its metadata map in no fixed order, a single JSON string is stable.
    out = d / OUT_NAME
    save_file(dict(sorted(tensors.items())), str(out), metadata={"reference": json.dumps(meta, sort_keys=True)})
    out.chmod(0o644)
    return {k: list(v.shape) for k, v in sorted(tensors.items())}


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    for name in MODELS:
        shapes = write_hidden_states(name)
        print(f"{name}/{OUT_NAME}: {json.dumps(shapes)}")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
