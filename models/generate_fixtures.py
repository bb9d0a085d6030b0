#!/usr/bin/env python3
"""Generate Lens's reference fixtures with the reference implementation, offline and deterministically.

Run from the repository root (after models/setup-reference.sh; no network is needed or used):

    HF_HUB_OFFLINE=1 .venv-ref/bin/python models/generate_fixtures.py

Reference implementation (pinned in models/requirements-reference.txt):
    transformers 5.23.0 (PyPI release; CLIP code in transformers/models/clip/{modeling_clip.py,
    image_processing_pil_clip.py}), torch 2.15.0 (CPU, 2 threads), Pillow 13.0.0, numpy 2.4.6,
    scikit-image 0.26.0 (source of the photos), safetensors 0.8.0, tokenizers 0.23.3.
torchvision must NOT be installed: transformers 5's `CLIPImageProcessor` is the torchvision backend and
only falls back to the PIL/numpy backend without it. This script names `CLIPImageProcessorPil` (PIL
bicubic resize on uint8, numpy centre crop / rescale / normalise) explicitly, so the backend is fixed.
Its saved preprocessor_config.json says "CLIPImageProcessor" (transformers strips the "Pil" suffix).

Everything is seeded (torch.manual_seed per model, numpy seed) and computed on 2 threads, so re-running
reproduces the same files byte for byte (checked: two runs, identical sha256 of every file)
on one machine. Across CPUs the weights, the images and everything computed in numpy or Pillow
stay byte-identical, but PyTorch's float outputs differ in the last bits (~1e-6 absolute, measured
between the committed files and a regeneration on another CPU in December 2026): far inside the
tests' tolerances.

Every processor is given the opened file turned upright, `ImageOps.exif_transpose(Image.open(path))`
(reference_image), as an application hands transformers a PIL image; the processor's own convert_to_rgb
(do_convert_rgb=True: transformers/image_processing_backends.py PilBackend.process_image ->
image_transforms.convert_to_rgb) composites anything with an alpha band or a "transparency" entry onto white.
For opaque files that is exactly `transformers.image_utils.load_image` (exif_transpose + convert("RGB")); for
chelsea_rgba.png (the one photo with alpha) load_image would drop the alpha instead.

Writes under models/fixtures/:

  images/                       real photos (scikit-image's sample data) in many formats:
      astronaut.png             RGB PNG 512x512 (the original pixels, re-encoded by Pillow)
      rocket.jpg                scikit-image's JPEG, byte for byte (640x427, baseline JFIF)
      coffee.jpg                RGB JPEG q90, 600x400
      chelsea_rgba.png          RGBA PNG 451x300: alpha is a horizontal ramp, left 1/8 fully transparent
                                (the RGB under alpha 0 is kept in the file; the processors composite onto
                                white, so decoders must composite too, not drop alpha)
      camera_grey.png           "L" PNG 256x256 (LANCZOS-downscaled)
      coins_grey.jpg            greyscale JPEG q85, 384x303
      chelsea_palette.png       "P" PNG 451x300, adaptive 128-colour palette (median cut, no dither)
      coffee_palette.gif        "P" GIF 300x200, single frame, adaptive 128-colour palette, no transparency
      astronaut_lossless.webp   lossless WebP 200x200
      coffee_lossy.webp         lossy WebP q80 300x200
      rocket_exif6.jpg          rocket's raw 640x427 pixels, JPEG q90, EXIF Orientation=6 (displays 427x640)
      coffee_exif3.jpg          coffee 300x200, JPEG q90, EXIF Orientation=3 (rotated 180 on display)
      corrupt_truncated.jpg     first 40% of rocket.jpg's bytes (error test)
      not_an_image.jpg          ASCII text (error test)

  preprocess/                   CLIP pre-processing reference for every decodable image above:
      preprocessor_config.json  openai/clip-vit-base-patch32's image processor settings
      reference.safetensors     <stem>.rgb_u8            u8 [H,W,3]   what the processor works on:
                                                                      convert_to_rgb(exif_transpose(open(path)))
                                                                      (see reference_image); only for the
                                                                      lossless files (PNG/GIF/lossless WebP) that
                                                                      fit in 451x300; the rest: shape + sha256
                                                                      in JSON
                                <stem>.clip_u8           u8 [3,224,224] processor output with do_normalize=False,
                                                                      x255, rounded (exact: values are 8-bit)
                                <stem>.tiny_quickgelu_u8 u8 [3,32,32]  same with clip-tiny-quickgelu's processor
                                <stem>.tiny_gelu_u8      u8 [3,30,30]  same with clip-tiny-gelu's processor
                                astronaut.pixel_values   f32 [3,224,224] fully normalised, astronaut.png only
      reference.json            processor class and settings, per image: file, PIL mode as opened, EXIF
                                orientation, raw and upright size, lossless flag, rgb shape + sha256

  clip-tiny-quickgelu/, clip-tiny-gelu/   tiny random CLIPModels in the HuggingFace hub layout:
      config.json, model.safetensors (f32)       CLIPModel.save_pretrained(safe_serialization=True)
      tokenizer.json, tokenizer_config.json      CLIPTokenizerFast.save_pretrained (the real OpenAI BPE from
                                                 shared/reference/tokenizers/clip-hf); tokenizer.json is then
                                                 re-serialised without indentation (same content, 1.7 MB
                                                 instead of 3.6 MB)
      special_tokens_map.json                    written here (transformers 5 no longer writes it)
      preprocessor_config.json                   CLIPImageProcessorPil.save_pretrained
      reference.safetensors / reference.json     the model's outputs on 4 images and 8 texts (not weights)

  tokenizer/clip_ids.json       CLIP BPE ids of 22 varied strings: unpadded/untruncated and padded/truncated to 77
  tokenizer/clip/tokenizer.json byte-for-byte copy of shared/reference/tokenizers/clip-hf/tokenizer.json
"""

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import PIL
import PIL.Image
import skimage
import tokenizers
import torch
import transformers
from safetensors.numpy import save_file
from transformers import CLIPConfig, CLIPModel, CLIPTokenizerFast
from PIL import ImageOps
from transformers.image_transforms import convert_to_rgb
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = Path(__file__).resolve().parent  # models/
OUT = ROOT / "fixtures"
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def find_tokenizer_dir() -> Path:
    # shared/ sits next to the checkout (../shared) or inside it (shared/).
    for base in [ROOT.parent, ROOT.parent.parent]:
        d = base / "shared" / "reference" / "tokenizers" / "clip-hf"
        if (d / "tokenizer.json").is_file():
            return d
    raise SystemExit("shared/reference/tokenizers/clip-hf/tokenizer.json not found (next to or inside the repo)")


TOKENIZER_DIR = find_tokenizer_dir()

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

LONG_TEXT = " ".join(
    (
        "a very long description of a photograph that keeps going with many words about colours shapes "
        "light shadows people animals buildings streets skies clouds mountains rivers and the sea"
    ).split()
    * 3
)  # 87 words, 89 ids with <|startoftext|>/<|endoftext|>: truncated to 77

TEXTS = [
    "a photo of a cat",
    "a photo of a dog",
    "an astronaut in a white space suit",
    "A ROCKET launching, with smoke & fire!!",
    "   extra   spaces\tand\nnewlines  ",
    "café naïve résumé 123 4567",
    "",
    LONG_TEXT,
]

TOKENIZER_CASES = TEXTS + [
    "it's we're I'll they've she'd you'll don't",
    "2026 was the year 1,000,000 photos were indexed",
    "https://example.com/path/to/img_01.jpg?q=1&x=y#frag",
    "state-of-the-art well-known re-ranking",
    "wow!!! ??? ... --- ;;; ''' \"quoted\"",
    "🙂 emoji 🚀🔥 👩‍👩‍👧",
    "東京の写真 고양이 猫",
    "Ünïcödé ÀÉÎÕÜ ß ﬁ",
    "<|startoftext|> literal special tokens <|endoftext|>",
    "a",
    "CamelCaseWords and snake_case_words",
    "tab\tseparated\tvalues\r\nwindows line",
    "3.14159 v2.0 #hashtag @mention $100 50%",
    "Hello, World!",
]

PROCESSORS = {
    "clip": dict(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                 image_mean=CLIP_MEAN, image_std=CLIP_STD),
    "tiny_quickgelu": dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                           image_mean=CLIP_MEAN, image_std=CLIP_STD),
    "tiny_gelu": dict(size={"shortest_edge": 40}, crop_size={"height": 30, "width": 30},
                      image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD),
}


def processor(name: str) -> CLIPImageProcessorPil:
    return CLIPImageProcessorPil(do_resize=True, resample=3, do_center_crop=True, do_rescale=True,
                                 rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True,
                                 **PROCESSORS[name])


# ---------------------------------------------------------------------------------------------- images

def reference_image(path) -> PIL.Image.Image:
    """The image as the processors are given it: opened and turned upright (EXIF orientation applied).

    The processors run convert_to_rgb on it themselves (do_convert_rgb=True), which composites transparency
    onto white; Lens's decode_image returns what that gives (reference_rgb).
    """
    return ImageOps.exif_transpose(PIL.Image.open(path))


def reference_rgb(img: PIL.Image.Image) -> np.ndarray:
    """uint8 [H, W, 3]: convert_to_rgb(img), the RGB the processors resize."""
    return np.ascontiguousarray(convert_to_rgb(img, return_numpy=True), dtype=np.uint8)


# file -> lossless (decoders must reproduce the RGB bytes exactly)
GOOD_IMAGES = {
    "astronaut.png": True,
    "rocket.jpg": False,
    "coffee.jpg": False,
    "chelsea_rgba.png": True,
    "camera_grey.png": True,
    "coins_grey.jpg": False,
    "chelsea_palette.png": True,
    "coffee_palette.gif": True,
    "astronaut_lossless.webp": True,
    "coffee_lossy.webp": False,
    "rocket_exif6.jpg": False,
    "coffee_exif3.jpg": False,
}
BAD_IMAGES = ["corrupt_truncated.jpg", "not_an_image.jpg"]


def write_images():
    d = OUT / "images"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)

    def sk(name):
        return PIL.Image.open(SKIMAGE_DATA / name)

    astronaut = sk("astronaut.png").convert("RGB")  # 512x512
    chelsea = sk("chelsea.png").convert("RGB")  # 451x300
    coffee = sk("coffee.png").convert("RGB")  # 600x400
    coffee_small = coffee.resize((300, 200), PIL.Image.LANCZOS)

    astronaut.save(d / "astronaut.png", optimize=False)
    shutil.copyfile(SKIMAGE_DATA / "rocket.jpg", d / "rocket.jpg")
    coffee.save(d / "coffee.jpg", quality=90)

    # RGBA: horizontal alpha ramp with a fully transparent band; RGB under alpha 0 is kept as is.
    rgba = chelsea.convert("RGBA")
    w, h = rgba.size
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    alpha[:, : w // 8] = 0
    rgba.putalpha(PIL.Image.fromarray(alpha, mode="L"))
    rgba.save(d / "chelsea_rgba.png")

    sk("camera.png").convert("L").resize((256, 256), PIL.Image.LANCZOS).save(d / "camera_grey.png")
    sk("coins.png").convert("L").save(d / "coins_grey.jpg", quality=85)
    chelsea.quantize(colors=128, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE).save(
        d / "chelsea_palette.png")
    coffee_small.quantize(colors=128, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE).save(
        d / "coffee_palette.gif")
    astronaut.resize((200, 200), PIL.Image.LANCZOS).save(d / "astronaut_lossless.webp", lossless=True)
    coffee_small.save(d / "coffee_lossy.webp", quality=80)

    # EXIF orientation: the raw pixels are stored unrotated; the tag says how to display them.
    for img, name, orientation in [(sk("rocket.jpg").convert("RGB"), "rocket_exif6.jpg", 6),
                                   (coffee_small, "coffee_exif3.jpg", 3)]:
        exif = PIL.Image.Exif()
        exif[0x0112] = orientation
        img.save(d / name, quality=90, exif=exif.tobytes())

    rocket = (SKIMAGE_DATA / "rocket.jpg").read_bytes()
    (d / "corrupt_truncated.jpg").write_bytes(rocket[: int(len(rocket) * 0.4)])
    (d / "not_an_image.jpg").write_bytes(b"This is a text file pretending to be a JPEG.\n" * 4)

    # Sanity: the files are what they claim to be.
    gif = PIL.Image.open(d / "coffee_palette.gif")
    assert gif.mode == "P" and "transparency" not in gif.info and getattr(gif, "n_frames", 1) == 1, gif.info
    assert PIL.Image.open(d / "rocket_exif6.jpg").getexif().get(0x0112) == 6
    assert PIL.Image.open(d / "coffee_exif3.jpg").getexif().get(0x0112) == 3
    for bad in BAD_IMAGES:
        try:
            reference_image(d / bad).load()
        except Exception:
            pass
        else:
            raise AssertionError(f"{bad} decoded")


# ------------------------------------------------------------------------------------- pre-processing

# rgb_u8 is stored for lossless files no larger than chelsea (451x300 in either orientation).
RGB_U8_MAX_LONG, RGB_U8_MAX_SHORT = 451, 300


def u8_stage(proc, img) -> np.ndarray:
    """Processor output before normalisation, as the exact 8-bit values it holds ([3,h,w] u8)."""
    x = proc(img, do_normalize=False, return_tensors="np")["pixel_values"][0]
    u8 = np.rint(x.astype(np.float64) * 255.0)
    assert np.abs(u8 - x.astype(np.float64) * 255.0).max() < 1e-4, "pre-normalisation values are not 8-bit levels"
    return np.ascontiguousarray(u8.astype(np.uint8))


def write_preprocess():
    d = OUT / "preprocess"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    procs = {name: processor(name) for name in PROCESSORS}
    procs["clip"].save_pretrained(d)
    tensors = {}
    meta = {
        "processor_class": type(procs["clip"]).__name__,
        "pipeline": "img = PIL.ImageOps.exif_transpose(PIL.Image.open(path)); then CLIPImageProcessorPil "
                    "(transformers.image_transforms.convert_to_rgb: transparency composited onto white, else "
                    "convert('RGB'); PIL bicubic resize of the uint8 image so the short side is shortest_edge, long "
                    "side int(long*short/short_in), numpy centre crop, x rescale_factor, (x-mean)/std)",
        "processors": {name: {k: v for k, v in PROCESSORS[name].items()} for name in PROCESSORS},
        "tensors": {
            "<stem>.rgb_u8": "uint8 [H,W,3] convert_to_rgb(img), only where images[stem].rgb_u8 is true",
            "<stem>.clip_u8": "uint8 [3,224,224] processors.clip output with do_normalize=False, x255",
            "<stem>.tiny_quickgelu_u8": "uint8 [3,32,32] processors.tiny_quickgelu output with do_normalize=False, x255",
            "<stem>.tiny_gelu_u8": "uint8 [3,30,30] processors.tiny_gelu output with do_normalize=False, x255",
            "astronaut.pixel_values": "float32 [3,224,224] processors.clip output (normalised) for astronaut.png",
        },
        "pillow": PIL.__version__,
        "transformers_version": transformers.__version__,
        "images": {},
    }
    for file, lossless in GOOD_IMAGES.items():
        stem = Path(file).stem
        path = OUT / "images" / file
        opened = PIL.Image.open(path)
        img = reference_image(path)
        rgb = reference_rgb(img)
        assert rgb.shape == (img.height, img.width, 3)
        keep_rgb = lossless and max(rgb.shape[:2]) <= RGB_U8_MAX_LONG and min(rgb.shape[:2]) <= RGB_U8_MAX_SHORT
        if keep_rgb:
            tensors[f"{stem}.rgb_u8"] = rgb
        tensors[f"{stem}.clip_u8"] = u8_stage(procs["clip"], img)
        tensors[f"{stem}.tiny_quickgelu_u8"] = u8_stage(procs["tiny_quickgelu"], img)
        tensors[f"{stem}.tiny_gelu_u8"] = u8_stage(procs["tiny_gelu"], img)
        meta["images"][stem] = {
            "file": file,
            "format": opened.format,
            "pil_mode": opened.mode,
            "exif_orientation": opened.getexif().get(0x0112, 1),
            "raw_width": opened.width,
            "raw_height": opened.height,
            "width": img.width,
            "height": img.height,
            "lossless": lossless,
            "rgb_u8": keep_rgb,
            "rgb_shape": list(rgb.shape),
            "rgb_sha256": hashlib.sha256(rgb.tobytes()).hexdigest(),
        }
    astronaut = reference_image(OUT / "images" / "astronaut.png")
    pv = procs["clip"](astronaut, return_tensors="np")["pixel_values"][0]
    tensors["astronaut.pixel_values"] = np.ascontiguousarray(pv.astype(np.float32))
    # Self-check: normalising the u8 stage reproduces pixel_values.
    mean, std = np.array(CLIP_MEAN)[:, None, None], np.array(CLIP_STD)[:, None, None]
    again = (tensors["astronaut.clip_u8"].astype(np.float64) / 255.0 - mean) / std
    assert np.abs(again - pv).max() < 1e-5
    save_file(dict(sorted(tensors.items())), str(d / "reference.safetensors"))
    (d / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return type(procs["clip"]).__name__


# ---------------------------------------------------------------------------------------------- models

MODELS = {
    "clip-tiny-quickgelu": dict(
        seed=1000,
        processor="tiny_quickgelu",
        config=dict(
            text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                             bos_token_id=0, pad_token_id=1, eos_token_id=2),
            vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=37,
                               num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu"),
            projection_dim=24),
        # config.logit_scale_init_value stays at the default 2.6592; the weight differs from it, as in the
        # real openai checkpoints (config 2.6592, trained weight 4.6052): read the weight, not the config.
        logit_scale=2.3),
    "clip-tiny-gelu": dict(
        seed=2000,
        processor="tiny_gelu",
        config=dict(
            text_config=dict(vocab_size=49408, hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
                             bos_token_id=49406, pad_token_id=49407, eos_token_id=49407, layer_norm_eps=1e-6),
            vision_config=dict(image_size=30, patch_size=6, hidden_size=48, intermediate_size=64,
                               num_hidden_layers=3, num_attention_heads=3, hidden_act="gelu", layer_norm_eps=1e-6),
            projection_dim=16, logit_scale_init_value=3.0),
        logit_scale=3.2),  # config says 3.0, the weight 3.2 (see above)
}

MODEL_IMAGES = ["astronaut.png", "rocket.jpg", "chelsea_rgba.png", "camera_grey.png"]


def load_tokenizer() -> CLIPTokenizerFast:
    return CLIPTokenizerFast.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


def write_tokenizer_files(d: Path, tokenizer: CLIPTokenizerFast):
    tokenizer.save_pretrained(d)
    # Same content without indentation: 1.7 MB instead of 3.6 MB per model directory.
    tokenizers.Tokenizer.from_file(str(d / "tokenizer.json")).save(str(d / "tokenizer.json"), pretty=False)
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    for k, v in special.items():
        assert str(getattr(tokenizer, k)) == v, (k, getattr(tokenizer, k))
    (d / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    # The saved files load back to the same tokenizer.
    again = CLIPTokenizerFast.from_pretrained(str(d), local_files_only=True)
    for t in TOKENIZER_CASES:
        assert again(t)["input_ids"] == tokenizer(t)["input_ids"], t


def perturb(model: CLIPModel, logit_scale: float):
    """HF initialises norms to 1/0 and biases to 0: add noise to every parameter so nothing is constant."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(logit_scale)
            elif p.ndim == 1:  # LayerNorm weights/biases, Linear biases, class_embedding
                p.add_(torch.randn_like(p) * 0.1)
            else:  # matrices, conv kernel, embeddings: already random; a little more
                p.add_(torch.randn_like(p) * 0.02)
        for name, p in model.named_parameters():
            if p.numel() > 1:
                assert p.std() > 1e-3, f"{name} is (nearly) constant"


def write_model(name: str, spec: dict):
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    torch.manual_seed(spec["seed"])
    model = CLIPModel(CLIPConfig(**spec["config"])).eval()
    perturb(model, spec["logit_scale"])
    model.save_pretrained(d, safe_serialization=True)
    tokenizer = load_tokenizer()
    write_tokenizer_files(d, tokenizer)
    proc = processor(spec["processor"])
    proc.save_pretrained(d)

    images = [reference_image(OUT / "images" / f) for f in MODEL_IMAGES]
    pixel_values = proc(images, return_tensors="pt")["pixel_values"].to(torch.float32)
    enc = tokenizer(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    input_ids, attention_mask = enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.int64)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        vision = model.vision_model(pixel_values=pixel_values)
        text = model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        image_embeds = model.get_image_features(pixel_values=pixel_values)
        image_embeds = getattr(image_embeds, "pooler_output", image_embeds)  # transformers 5: a ModelOutput
        text_embeds = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
        # Cross-checks: get_*_features == projection of the tower's pooled output == forward's embeds;
        # logits == exp(logit_scale) * cos.
        assert torch.allclose(image_embeds, model.visual_projection(vision.pooler_output), atol=1e-6)
        assert torch.allclose(text_embeds, model.text_projection(text.pooler_output), atol=1e-6)
        assert torch.allclose(image_embeds, out.image_embeds * image_embeds.norm(dim=-1, keepdim=True), atol=1e-5)
        img_n = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
        txt_n = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * img_n @ txt_n.T
        assert torch.allclose(logits, out.logits_per_image, atol=1e-5)
        assert torch.equal(out.logits_per_text, out.logits_per_image.T)
        assert abs(model.logit_scale.item() - spec["logit_scale"]) < 1e-6
    tensors = {
        "pixel_values": pixel_values.numpy(),
        "input_ids": input_ids.numpy(),
        "attention_mask": attention_mask.numpy(),
        "image_embeds": image_embeds.numpy(),
        "text_embeds": text_embeds.numpy(),
        "logits_per_image": out.logits_per_image.numpy(),
        "logits_per_text": out.logits_per_text.numpy(),
        "vision_last_hidden_state": vision.last_hidden_state.numpy(),
        "text_last_hidden_state": text.last_hidden_state.numpy(),
    }
    for k, v in tensors.items():
        assert v.dtype == (np.int64 if k in ("input_ids", "attention_mask") else np.float32), (k, v.dtype)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(d / "reference.safetensors"))
    unpadded = [ids[: int(m.sum())] for ids, m in zip(input_ids.tolist(), attention_mask)]
    meta = {
        "images": MODEL_IMAGES,
        "texts": TEXTS,
        "input_ids": unpadded,  # each row up to the last attention_mask==1 position (ends with 49407)
        "logit_scale": spec["logit_scale"],
        "image_processor_class": type(proc).__name__,
        "pooling": "argmax of input_ids (legacy eos_token_id=2)" if spec["config"]["text_config"]["eos_token_id"] == 2
        else "first position of eos_token_id",
        "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    (d / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


# -------------------------------------------------------------------------------------------- tokenizer

def write_tokenizer_cases():
    d = OUT / "tokenizer"
    if d.exists():
        shutil.rmtree(d)
    (d / "clip").mkdir(parents=True)
    shutil.copyfile(TOKENIZER_DIR / "tokenizer.json", d / "clip" / "tokenizer.json")
    tokenizer = load_tokenizer()
    cases = []
    for t in TOKENIZER_CASES:
        ids = tokenizer(t, add_special_tokens=True)["input_ids"]
        enc77 = tokenizer(t, padding="max_length", max_length=77, truncation=True)
        cases.append({"text": t, "ids": ids, "ids_77": enc77["input_ids"], "attention_mask_77": enc77["attention_mask"],
                      "truncated": len(ids) > 77})
    assert cases[0]["ids"] == [49406, 320, 1125, 539, 320, 2368, 49407], cases[0]
    assert sum(c["truncated"] for c in cases) == 1 and cases[TEXTS.index(LONG_TEXT)]["truncated"]
    doc = {
        "tokenizer": "openai CLIP BPE, CLIPTokenizerFast from shared/reference/tokenizers/clip-hf "
                     "(copy: tokenizer/clip/tokenizer.json)",
        "transformers_version": transformers.__version__,
        "tokenizers_version": tokenizers.__version__,
        "fields": {
            "ids": "tokenizer(text, add_special_tokens=True): no padding, no truncation (the long text exceeds 77)",
            "ids_77": "tokenizer(text, padding='max_length', max_length=77, truncation=True): truncation keeps "
                      "<|startoftext|> first and <|endoftext|> at index 76; padding with <|endoftext|> (49407)",
            "attention_mask_77": "the attention mask of ids_77",
            "truncated": "len(ids) > 77",
        },
        "cases": cases,
    }
    (d / "clip_ids.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return cases


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    torch.use_deterministic_algorithms(True)
    write_images()
    processor_class = write_preprocess()
    for name, spec in MODELS.items():
        write_model(name, spec)
    cases = write_tokenizer_cases()
    print(f"image processor: {processor_class} (backend {processor('clip').backend!r}); "
          f"transformers {transformers.__version__}, torch {torch.__version__}, Pillow {PIL.__version__}, "
          f"tokenizers {tokenizers.__version__}")
    print(f"{cases[0]['text']!r} -> {cases[0]['ids']}")
    print(f"wrote {sum(1 for p in OUT.rglob('*') if p.is_file())} files under {OUT}")


if __name__ == "__main__":
    main()
