#!/usr/bin/env python3
"""Write a full-size random-weight CLIP checkpoint (ViT-B/32 shapes: the default `CLIPConfig`) in the
hub's layout, for benchmarks that need real sizes where the real weights cannot be downloaded.

    .venv-ref/bin/python models/make_random_clip.py OUT_DIR

Weights from `CLIPModel(CLIPConfig())` with torch.manual_seed(0) (safetensors, ~600 MB); tokenizer files
from ../shared/reference/tokenizers/clip-hf (the real OpenAI BPE vocabulary); the published
openai/clip-vit-base-patch32 pre-processor config. Not committed: generated on demand.
"""

import json
import pathlib
import shutil
import sys

import torch
from transformers import CLIPConfig, CLIPModel

PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizers = pathlib.Path(__file__).resolve().parents[2] / "shared/reference/tokenizers/clip-hf"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizers / name, out / name)
    (out / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
