#!/usr/bin/env python3
"""Generate Lens's reference fixtures with the reference implementation, offline and deterministically.

Run from the repository root (after models/setup-reference.sh):

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/generate_fixtures.py

Reference: transformers 5.23.0 / torch 2.15.0 / Pillow 13.0.0 (models/requirements-reference.txt).
The image processor is `CLIPImageProcessorPil` (what `CLIPImageProcessor` resolves to without
torchvision): PIL bicubic resize, numpy crop / rescale / normalise.

Writes under models/fixtures/:
  images/                     real photos (scikit-image's samples) in many formats, plus two broken files
  preprocess/                 CLIP pre-processing reference for every image:
    preprocessor_config.json    openai/clip-vit-base-patch32's processor settings
    reference.safetensors       <stem>.rgb_u8 [H,W,3] decoded RGB (load_image: exif_transpose + convert("RGB"))
                                <stem>.clip_u8 [3,224,224] processor output before normalisation, x255 (exact u8)
                                <stem>.tiny_quickgelu_u8 / <stem>.tiny_gelu_u8: the same for the tiny models' processors
                                astronaut.pixel_values [3,224,224] f32, fully normalised
    reference.json              per image: file, PIL mode as opened, size after exif transpose, sha256 of the RGB bytes
  clip-tiny-quickgelu/, clip-tiny-gelu/   tiny random CLIPModels in the hub layout (config.json,
                                model.safetensors, tokenizer files, preprocessor_config.json) and
    reference.safetensors       pixel_values, input_ids, attention_mask, image_embeds, text_embeds (get_*_features:
                                projected, not normalised), logits_per_image, logits_per_text,
                                vision_last_hidden_state, text_last_hidden_state
    reference.json              images, texts, unpadded input ids, versions
  tokenizer/clip_ids.json     CLIP BPE ids of varied strings (no padding)
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import PIL
import PIL.Image
import skimage
import torch
import transformers
from safetensors.numpy import save_file
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast
from transformers.image_utils import load_image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "fixtures"
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
TOKENIZER_DIR = ROOT.parent.parent / "shared" / "reference" / "tokenizers" / "clip-hf"
if not TOKENIZER_DIR.is_dir():  # a clone next to shared/ has it one level up
    TOKENIZER_DIR = ROOT.parent / ".." / "shared" / "reference" / "tokenizers" / "clip-hf"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

TEXTS = [
    "a photo of a cat",
    "a photo of a dog",
    "an astronaut in a white space suit",
    "A ROCKET launching, with smoke & fire!!",
    "   extra   spaces\tand\nnewlines  ",
    "café naïve résumé 123 4567",
    "",
    " ".join(
        "a very long description of a photograph that keeps going with many words about colours shapes "
        "light shadows people animals buildings streets skies clouds mountains rivers and the sea".split()
        * 3
    ),
]

TOKENIZER_CASES = TEXTS + [
    "it's we're I'll they've she'd you'll",
    "2026 was the year 1,000,000 photos were indexed",
    "https://example.com/path?q=1&x=y",
    "state-of-the-art well-known",
    "wow!!! ??? ... ---",
    "🙂 emoji 🚀🔥",
    "東京の写真",
    "Ünïcödé ÀÉÎÕÜ",
    "<|startoftext|> literal special tokens <|endoftext|>",
    "a",
    "CamelCaseWords and snake_case_words",
    "tab\tseparated\tvalues",
]

PROCESSORS = {
    "clip": dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                 image_mean=CLIP_MEAN, image_std=CLIP_STD),
    "tiny_quickgelu": dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                           image_mean=CLIP_MEAN, image_std=CLIP_STD),
    "tiny_gelu": dict(size={"shortest_edge": 40}, crop_size={"height": 30, "width": 30},
                      image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD),
}


def processor(name):
    return CLIPImageProcessorPil(do_resize=True, resample=3, do_center_crop=True, do_rescale=True,
                                 rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
                                 **PROCESSORS[name])


def write_images():
    d = OUT / "images"
    d.mkdir(parents=True, exist_ok=True)
    sk = lambda name: PIL.Image.open(SKIMAGE_DATA / name)
    astronaut, chelsea, coffee = sk("astronaut.png"), sk("chelsea.png"), sk("coffee.png")
    astronaut.convert("RGB").resize((384, 384), PIL.Image.LANCZOS).save(d / "astronaut.png")
    shutil.copyfile(SKIMAGE_DATA / "rocket.jpg", d / "rocket.jpg")
    coffee.convert("RGB").save(d / "coffee.jpg", quality=90)
    # RGBA: a horizontal alpha ramp with a fully transparent band, so dropping (not compositing) alpha shows.
    rgba = chelsea.convert("RGBA")
    w, h = rgba.size
    alpha = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
    alpha[:, : w // 8] = 0
    rgba.putalpha(PIL.Image.fromarray(alpha))
    rgba.save(d / "chelsea_rgba.png")
    sk("camera.png").convert("L").resize((256, 256), PIL.Image.LANCZOS).save(d / "camera_grey.png")
    sk("coins.png").convert("L").save(d / "coins_grey.jpg", quality=85)
    chelsea.convert("RGB").quantize(colors=64, method=PIL.Image.Quantize.MEDIANCUT).save(d / "chelsea_palette.png")
    coffee_small = coffee.convert("RGB").resize((300, 200), PIL.Image.LANCZOS)
    coffee_small.quantize(colors=128, method=PIL.Image.Quantize.MEDIANCUT).save(d / "coffee_palette.gif")
    astronaut.convert("RGB").resize((200, 200), PIL.Image.LANCZOS).save(d / "astronaut_lossless.webp", lossless=True)
    coffee_small.save(d / "coffee_lossy.webp", quality=80)
    # EXIF orientation: raw pixels stay as they are, the tag says how to display them.
    for src, name, orientation in [("rocket.jpg", "rocket_exif6.jpg", 6), ("coffee.png", "coffee_exif3.jpg", 3)]:
        img = sk(src).convert("RGB")
        if src == "coffee.png":
            img = img.resize((300, 200), PIL.Image.LANCZOS)
        exif = PIL.Image.Exif()
        exif[0x0112] = orientation
        img.save(d / name, quality=90, exif=exif.tobytes())
    rocket = (SKIMAGE_DATA / "rocket.jpg").read_bytes()
    (d / "corrupt_truncated.jpg").write_bytes(rocket[: int(len(rocket) * 0.4)])
    (d / "not_an_image.jpg").write_bytes(b"This is a text file pretending to be a JPEG.\n" * 4)


GOOD_IMAGES = ["astronaut.png", "rocket.jpg", "coffee.jpg", "chelsea_rgba.png", "camera_grey.png", "coins_grey.jpg",
               "chelsea_palette.png", "coffee_palette.gif", "astronaut_lossless.webp", "coffee_lossy.webp",
               "rocket_exif6.jpg", "coffee_exif3.jpg"]


def u8_stage(proc, img):
    """Processor output before normalisation, as the exact 8-bit values it holds."""
    x = proc(img, do_normalize=False, return_tensors="np")["pixel_values"][0]
    u8 = np.rint(x * 255.0)
    assert np.abs(u8 - x * 255.0).max() < 1e-3, "pre-normalisation values are not 8-bit levels"
    return u8.astype(np.uint8)


def write_preprocess():
    d = OUT / "preprocess"
    d.mkdir(parents=True, exist_ok=True)
    procs = {name: processor(name) for name in PROCESSORS}
    procs["clip"].save_pretrained(d)
    tensors, meta = {}, {"processor_class": type(procs["clip"]).__name__, "pillow": PIL.__version__, "images": {}}
    for file in GOOD_IMAGES:
        stem = Path(file).stem
        opened = PIL.Image.open(OUT / "images" / file)
        img = load_image(str(OUT / "images" / file))
        rgb = np.asarray(img, dtype=np.uint8)
        tensors[f"{stem}.rgb_u8"] = np.ascontiguousarray(rgb)
        tensors[f"{stem}.clip_u8"] = u8_stage(procs["clip"], img)
        tensors[f"{stem}.tiny_quickgelu_u8"] = u8_stage(procs["tiny_quickgelu"], img)
        tensors[f"{stem}.tiny_gelu_u8"] = u8_stage(procs["tiny_gelu"], img)
        meta["images"][stem] = {"file": file, "pil_mode": opened.mode, "width": img.width, "height": img.height,
                                "rgb_sha256": hashlib.sha256(rgb.tobytes()).hexdigest()}
    astronaut = load_image(str(OUT / "images" / "astronaut.png"))
    tensors["astronaut.pixel_values"] = procs["clip"](astronaut, return_tensors="np")["pixel_values"][0].astype(np.float32)
    save_file(tensors, str(d / "reference.safetensors"))
    (d / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


MODELS = {
    "clip-tiny-quickgelu": dict(
        processor="tiny_quickgelu",
        config=CLIPConfig(
            text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                             bos_token_id=0, pad_token_id=1, eos_token_id=2),
            vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                               num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu"),
            projection_dim=24),
        logit_scale=2.3),
    "clip-tiny-gelu": dict(
        processor="tiny_gelu",
        config=CLIPConfig(
            text_config=dict(vocab_size=49408, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
                             bos_token_id=49406, pad_token_id=49407, eos_token_id=49407, layer_norm_eps=1e-6),
            vision_config=dict(image_size=30, patch_size=6, hidden_size=48, intermediate_size=64,
                               num_hidden_layers=3, num_attention_heads=3, hidden_act="gelu", layer_norm_eps=1e-6),
            projection_dim=16, logit_scale_init_value=3.0),
        logit_scale=3.0),
}

MODEL_IMAGES = ["astronaut.png", "rocket.jpg", "chelsea_rgba.png", "camera_grey.png"]


def write_model(name, spec, seed):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    torch.manual_seed(seed)
    model = CLIPModel(spec["config"]).eval()
    with torch.no_grad():
        # HF initialises norms to 1/0 and biases to 0; perturb everything so no bug can hide behind a constant.
        for pname, p in model.named_parameters():
            if pname == "logit_scale":
                p.fill_(spec["logit_scale"])
            elif p.ndim == 1 or "norm" in pname:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(d, safe_serialization=True)
    tokenizer = CLIPTokenizerFast.from_pretrained(str(TOKENIZER_DIR))
    tokenizer.save_pretrained(d)
    proc = processor(spec["processor"])
    proc.save_pretrained(d)

    images = [load_image(str(OUT / "images" / f)) for f in MODEL_IMAGES]
    pixel_values = proc(images, return_tensors="pt")["pixel_values"]
    enc = tokenizer(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixel_values)
        vision = model.vision_model(pixel_values=pixel_values)
        text = model.text_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        image_embeds = model.visual_projection(vision.pooler_output)
        text_embeds = model.text_projection(text.pooler_output)
        feats = model.get_image_features(pixel_values=pixel_values)
        feats = getattr(feats, "pooler_output", feats)
        assert torch.allclose(feats, image_embeds, atol=1e-6), "get_image_features disagrees with the projection"
    tensors = {
        "pixel_values": pixel_values.numpy().astype(np.float32),
        "input_ids": enc["input_ids"].numpy().astype(np.int64),
        "attention_mask": enc["attention_mask"].numpy().astype(np.int64),
        "image_embeds": image_embeds.numpy(),
        "text_embeds": text_embeds.numpy(),
        "logits_per_image": out.logits_per_image.numpy(),
        "logits_per_text": out.logits_per_text.numpy(),
        "vision_last_hidden_state": vision.last_hidden_state.numpy(),
        "text_last_hidden_state": text.last_hidden_state.numpy(),
    }
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(d / "reference.safetensors"))
    unpadded = [ids[: int(m.sum())] for ids, m in zip(enc["input_ids"].tolist(), enc["attention_mask"])]
    meta = {"images": MODEL_IMAGES, "texts": TEXTS, "input_ids": unpadded,
            "transformers_version": transformers.__version__, "torch_version": torch.__version__}
    (d / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def write_tokenizer_cases():
    d = OUT / "tokenizer"
    d.mkdir(parents=True, exist_ok=True)
    tokenizer = CLIPTokenizerFast.from_pretrained(str(TOKENIZER_DIR))
    cases = [{"text": t, "ids": tokenizer(t)["input_ids"],
              "ids_77": tokenizer(t, padding="max_length", max_length=77, truncation=True)["input_ids"]}
             for t in TOKENIZER_CASES]
    assert cases[0]["ids"] == [49406, 320, 1125, 539, 320, 2368, 49407], cases[0]
    (d / "clip_ids.json").write_text(json.dumps({"tokenizer": "openai CLIP BPE (shared/reference/tokenizers/clip-hf)",
                                                 "cases": cases}, indent=1, ensure_ascii=False) + "\n")


def main():
    torch.set_num_threads(2)
    write_images()
    write_preprocess()
    for seed, (name, spec) in enumerate(MODELS.items()):
        write_model(name, spec, seed)
    write_tokenizer_cases()
    print("processor:", type(processor("clip")).__name__, "| transformers", transformers.__version__,
          "| torch", torch.__version__, "| Pillow", PIL.__version__)


if __name__ == "__main__":
    main()
