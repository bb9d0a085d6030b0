#!/usr/bin/env python3
"""Generate Lens's BLIP reference fixtures with the reference implementation, offline and deterministically.

Run from the repository root (after models/setup-reference.sh, or with any venv holding the versions pinned in
models/requirements-reference.txt; no network is needed or used):

    HF_HUB_OFFLINE=1 /work/ref-venv/bin/python models/generate_blip_fixtures.py

Reference implementation: transformers 5.23.0 (BLIP code in transformers/models/blip/{modeling_blip.py,
modeling_blip_text.py, image_processing_pil_blip.py, processing_blip.py}; beam search in
transformers/generation/utils.py `_beam_search`), torch 2.15.0 (CPU, 2 threads), Pillow, numpy, safetensors,
tokenizers as pinned. torchvision must NOT be installed (see generate_fixtures.py): this script names
`BlipImageProcessorPil` (PIL bicubic resize on uint8, numpy rescale / normalise, no centre crop) explicitly.
Its saved preprocessor_config.json says "BlipImageProcessor" (transformers strips the "Pil" suffix).
It reads the photos generate_fixtures.py wrote under models/fixtures/images/ (run that one first if missing), and
gives the processor each one as generate_fixtures.reference_image opens it (`ImageOps.exif_transpose(Image.open(
path))`): the processor's convert_to_rgb composites chelsea_rgba.png's alpha onto white (load_image would drop it).

Everything is seeded and computed on 2 threads, so re-running reproduces the same files byte for byte
(checked: two runs, identical sha256 of every file) on one machine. Across CPUs the weights, the images and everything computed in numpy or Pillow
stay byte-identical, but PyTorch's float outputs differ in the last bits (~1e-6 absolute, measured
between the committed files and a regeneration on another CPU in December 2026): far inside the
tests' tolerances.

Writes models/fixtures/blip-tiny/, a tiny random BlipForConditionalGeneration in the HuggingFace hub layout:

  config.json, generation_config.json, model.safetensors (f32)
                      BlipForConditionalGeneration.save_pretrained(safe_serialization=True).
                      Tied LM head: transformers writes ONLY `text_decoder.bert.embeddings.word_embeddings.weight`
                      and `text_decoder.cls.predictions.bias`; `text_decoder.cls.predictions.decoder.weight` and
                      `text_decoder.cls.predictions.decoder.bias` are absent (in the module they are the same
                      tensors: decoder.weight IS word_embeddings.weight, decoder.bias IS predictions.bias, see
                      `_tied_weights_keys` in modeling_blip.py). A loader must take the LM head weight from the word
                      embeddings and the LM bias from `cls.predictions.bias` when the decoder.* names are missing
                      (published checkpoints may carry them explicitly: accept both).
  tokenizer.json, tokenizer_config.json
                      the BLIP BERT WordPiece tokenizer (bert-base-uncased + [DEC]=30522, [ENC]=30523) from
                      shared/reference/tokenizers/blip-bert, BertTokenizerFast.save_pretrained; tokenizer.json then
                      re-serialised without indentation (same content, smaller)
  special_tokens_map.json
                      written here (transformers 5 no longer writes it)
  preprocessor_config.json
                      BlipImageProcessorPil(size 32x32, bicubic, OPENAI CLIP mean/std).save_pretrained
  reference.safetensors / reference.json
                      outputs on 3 photos (astronaut.png, coffee.jpg, chelsea_rgba.png) batched as one batch:
                        pixel_values             f32 [3,3,32,32]   processor output
                        vision_last_hidden_state f32 [3,17,32]     model.vision_model(pixel_values).last_hidden_state
                        input_ids, attention_mask i64 [3,7]        the teacher-forced decoder input, AS FED: the
                                                                   processor's [CLS] ... [SEP] [PAD]* ids with ids[:,0]
                                                                   replaced by [DEC]=30522 (what generate() does)
                        logits                   f32 [3,7,30524]   model(pixel_values, input_ids, attention_mask).logits
                      and in reference.json 7 generate() cases (greedy / beam, conditional / unconditional,
                      repetition penalty, min_new_tokens): the exact kwargs, the ids generate() returned (prompt
                      included, finished rows padded), batch_decode(skip_special_tokens=True), where [SEP] ended
                      each row, and the smallest decision margins measured during generation.

and writes, next to the CLIP pre-processing reference of generate_fixtures.py, models/fixtures/preprocess/:

  blip_preprocessor_config.json   Salesforce/blip-image-captioning-base's image processor settings
                                  (BlipImageProcessorPil defaults: 384x384 exact resize, bicubic, no centre crop,
                                  x 1/255, OPENAI CLIP mean/std), BlipImageProcessorPil.to_json_file
  blip_reference.safetensors      <stem>.blip_u8          u8 [3,384,384] that processor's output with
                                                          do_normalize=False, x255, rounded (exact: values are
                                                          8-bit), for the 6 images of BLIP_U8_STORED
                                  astronaut.pixel_values  f32 [3,384,384] fully normalised, astronaut.png
  blip_reference.json             per image (every decodable photo, generate_fixtures.GOOD_IMAGES): file,
                                  whether blip_u8 is stored, and the sha256 of the blip_u8 bytes (C-order
                                  [3,384,384]) for all of them, stored or not
  generate_fixtures.py deletes and rewrites preprocess/ as a whole: run this script after it.

Random weights that decide: HF's default init (std 0.02) gives nearly uniform logits, so greedy ties and beam
near-ties would make the fixture fragile. After construction every parameter is re-drawn (in named_parameters
order, from the same seeded generator): word embeddings (= the tied LM head) N(0, 0.5), text position embeddings
N(0, 1), every other matrix / conv kernel / vision embedding N(0, 0.5), LayerNorm weights N(1, 0.1), every other
vector (biases) N(0, 0.1); then the LM bias of [SEP]=102 is raised by SEP_BIAS so that some rows end early. The
seed and SEP_BIAS were chosen (by a search over seeds and biases) so that, asserted below for every case:
  greedy: at every step of every unfinished row, top-1 minus top-2 processed score > GREEDY_MARGIN (1e-3);
  beam:   at every step, for every batch item still in play, the sorted top (2*num_beams + 1) accumulated
          candidate scores are > BEAM_MARGIN (1e-4) apart, the merged finished-hypothesis scores (length-
          penalised) that pick the kept hypotheses are > BEAM_MARGIN apart, and the early-stop heuristic's
          best-running vs worst-finished comparison is > BEAM_MARGIN from a tie;
  [SEP] ends some row before max_new_tokens in unconditional greedy AND unconditional beam search, while another
  row of the same batch runs to max_new_tokens; unconditional greedy rows are not one repeated token.
"""

import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import PIL
import tokenizers
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import save_file
from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipProcessor,
                          GenerationConfig, LogitsProcessor, LogitsProcessorList)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

from generate_fixtures import GOOD_IMAGES, reference_image, u8_stage  # noqa: E402  (models/ is on sys.path)

from beam_margins import BeamMargins  # models/, on sys.path when run as a script

ROOT = Path(__file__).resolve().parent  # models/
OUT = ROOT / "fixtures"
IMAGES = OUT / "images"


def find_tokenizer_dir() -> Path:
    # shared/ sits next to the checkout (../shared) or inside it (shared/).
    for base in [ROOT.parent, ROOT.parent.parent]:
        d = base / "shared" / "reference" / "tokenizers" / "blip-bert"
        if (d / "tokenizer.json").is_file():
            return d
    raise SystemExit("shared/reference/tokenizers/blip-bert/tokenizer.json not found (next to or inside the repo)")


TOKENIZER_DIR = find_tokenizer_dir()

DEC, ENC, PAD, CLS, SEP = 30522, 30523, 0, 101, 102

SEED = 0
SEP_BIAS = 6.0  # added to text_decoder.cls.predictions.bias[102] after the re-draw
STD_MATRIX, STD_WORD, STD_TEXT_POS, STD_VECTOR, STD_NORM = 0.5, 0.5, 1.0, 0.1, 0.1
GREEDY_MARGIN, BEAM_MARGIN = 1e-3, 1e-4

CONFIG = dict(
    vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       image_size=32, patch_size=8, hidden_act="gelu", layer_norm_eps=1e-5),
    text_config=dict(vocab_size=30524, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=64, layer_norm_eps=1e-12),
)

MODEL_IMAGES = ["astronaut.png", "coffee.jpg", "chelsea_rgba.png"]
FORCED_PROMPTS = ["a picture of", "a photography of a big", "there is"]
PROMPT = "a picture of"

# name -> (conditional on PROMPT?, generate kwargs besides pixel_values / input_ids / attention_mask)
CASES = {
    "greedy": (False, dict(do_sample=False, num_beams=1, max_new_tokens=20)),
    "greedy_prompt": (True, dict(do_sample=False, num_beams=1, max_new_tokens=20)),
    "beam3": (False, dict(do_sample=False, num_beams=3, max_new_tokens=20, length_penalty=1.0, early_stopping=False)),
    "beam3_prompt_early_lp06": (True, dict(do_sample=False, num_beams=3, max_new_tokens=15, length_penalty=0.6,
                                           early_stopping=True)),
    "greedy_rep15": (False, dict(do_sample=False, num_beams=1, max_new_tokens=20, repetition_penalty=1.5)),
    "beam3_rep13_min8": (False, dict(do_sample=False, num_beams=3, max_new_tokens=12, min_new_tokens=8,
                                     repetition_penalty=1.3)),
    "greedy_min10_max10": (False, dict(do_sample=False, num_beams=1, max_new_tokens=10, min_new_tokens=10)),
}
RESOLVED_KEYS = ["do_sample", "num_beams", "max_new_tokens", "min_new_tokens", "length_penalty", "early_stopping",
                 "repetition_penalty"]


def image_processor(size: int) -> BlipImageProcessorPil:
    return BlipImageProcessorPil(do_resize=True, size={"height": size, "width": size}, resample=3, do_rescale=True,
                                 rescale_factor=1 / 255, do_normalize=True, image_mean=OPENAI_CLIP_MEAN,
                                 image_std=OPENAI_CLIP_STD, do_convert_rgb=True)


def load_tokenizer() -> BertTokenizerFast:
    return BertTokenizerFast.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


# ------------------------------------------------------------------------------------------ margin checks

class GreedyMargins(LogitsProcessor):
    """Appended after generate()'s own processors: sees the final scores greedy takes the argmax of and records
    top-1 minus top-2 for every row that has not produced [SEP] yet."""

    def __init__(self):
        self.prompt_len, self.margins = None, []

    def __call__(self, input_ids, scores):
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        top2 = scores.topk(2, dim=-1).values
        for r in range(input_ids.shape[0]):
            if not (input_ids[r, self.prompt_len:] == SEP).any():
                self.margins.append((top2[r, 0] - top2[r, 1]).item())
        return scores


# ---------------------------------------------------------------------------------------------- model

def redraw(model: BlipForConditionalGeneration):
    """Re-draw every parameter (see the module docstring) so that generation is decisive."""
    norm_params = {f"{mn}.{pn}" for mn, mod in model.named_modules() if isinstance(mod, torch.nn.LayerNorm)
                   for pn, _ in mod.named_parameters(recurse=False)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "text_decoder.bert.embeddings.word_embeddings.weight":
                p.normal_(0.0, STD_WORD)
            elif name == "text_decoder.bert.embeddings.position_embeddings.weight":
                p.normal_(0.0, STD_TEXT_POS)
            elif name in norm_params and name.endswith(".weight"):
                p.normal_(1.0, STD_NORM)
            elif p.ndim >= 2:
                p.normal_(0.0, STD_MATRIX)
            else:
                p.normal_(0.0, STD_VECTOR)
        model.text_decoder.cls.predictions.bias[SEP] += SEP_BIAS
    # The tie survives the in-place re-draw.
    head = model.text_decoder.cls.predictions
    assert head.decoder.weight is model.text_decoder.bert.embeddings.word_embeddings.weight
    assert head.decoder.bias is head.bias


def ends(row: list, prompt_len: int):
    """1-based index of the first [SEP] among the generated tokens, or None."""
    gen = row[prompt_len:]
    return gen.index(SEP) + 1 if SEP in gen else None


def write_blip_tiny():
    d = OUT / "blip-tiny"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    torch.manual_seed(SEED)
    model = BlipForConditionalGeneration(BlipConfig(**CONFIG)).eval()
    redraw(model)
    cfg = model.config
    assert (cfg.text_config.bos_token_id, cfg.text_config.pad_token_id, cfg.text_config.sep_token_id,
            cfg.text_config.eos_token_id) == (DEC, PAD, SEP, 2)
    model.save_pretrained(d, safe_serialization=True)
    with safe_open(str(d / "model.safetensors"), "np") as f:
        saved = set(f.keys())
        assert all(f.get_tensor(k).dtype == np.float32 for k in saved)
    assert "text_decoder.bert.embeddings.word_embeddings.weight" in saved
    assert "text_decoder.cls.predictions.bias" in saved
    assert "text_decoder.cls.predictions.decoder.weight" not in saved
    assert "text_decoder.cls.predictions.decoder.bias" not in saved

    tokenizer = load_tokenizer()
    tokenizer.save_pretrained(d)
    tokenizers.Tokenizer.from_file(str(d / "tokenizer.json")).save(str(d / "tokenizer.json"), pretty=False)
    special = {"bos_token": "[DEC]", "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
               "sep_token": "[SEP]", "unk_token": "[UNK]", "additional_special_tokens": ["[ENC]"]}
    for k, v in special.items():
        if k != "additional_special_tokens":
            assert str(getattr(tokenizer, k)) == v, (k, getattr(tokenizer, k))
    assert tokenizer.convert_tokens_to_ids(["[DEC]", "[ENC]", "[PAD]", "[CLS]", "[SEP]"]) == [DEC, ENC, PAD, CLS, SEP]
    assert len(tokenizer) == 30524
    (d / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    image_proc = image_processor(32)
    image_proc.save_pretrained(d)
    processor = BlipProcessor(image_processor=image_proc, tokenizer=tokenizer)

    # The saved directory loads back: same tokenizer ids, same pixels, same weights (the tie is restored).
    again = BlipProcessor.from_pretrained(str(d), local_files_only=True)
    assert type(again.image_processor).__name__ == "BlipImageProcessorPil", type(again.image_processor)
    for t in FORCED_PROMPTS + ["A ROCKET launching, with smoke & fire!! [DEC] [ENC]"]:
        assert again.tokenizer(t)["input_ids"] == tokenizer(t)["input_ids"], t

    images = [reference_image(IMAGES / f) for f in MODEL_IMAGES]
    enc = processor(images=images, text=FORCED_PROMPTS, padding=True, return_tensors="pt")
    assert set(enc.keys()) == {"pixel_values", "input_ids", "attention_mask"}, enc.keys()
    pixel_values = enc["pixel_values"].to(torch.float32)
    assert torch.equal(pixel_values, again(images=images, return_tensors="pt")["pixel_values"])
    processor_ids = enc["input_ids"].to(torch.int64)
    attention_mask = enc["attention_mask"].to(torch.int64)
    assert (processor_ids[:, 0] == CLS).all()
    input_ids = processor_ids.clone()
    input_ids[:, 0] = DEC  # as BlipForConditionalGeneration.generate does before decoding
    lengths = attention_mask.sum(1).tolist()
    assert len(set(lengths)) == 3, lengths  # three different lengths, right-padded with [PAD]

    reloaded = BlipForConditionalGeneration.from_pretrained(str(d), local_files_only=True).eval()
    with torch.no_grad():
        vision = model.vision_model(pixel_values=pixel_values).last_hidden_state
        logits = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask).logits
        logits_again = reloaded(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.equal(logits, logits_again)
    assert vision.shape == (3, 17, 32) and logits.shape == (3, input_ids.shape[1], 30524)

    # Generation, with the decision margins measured on the way.
    beam_margins = BeamMargins(model.text_decoder)
    prompt = processor(text=[PROMPT] * 3, return_tensors="pt")
    cases = {}
    for name, (conditional, kwargs) in CASES.items():
        extra = {}
        if conditional:
            # generate() overwrites input_ids[:, 0] in place: pass a copy.
            extra = dict(input_ids=prompt["input_ids"].clone(), attention_mask=prompt["attention_mask"].clone())
        greedy = GreedyMargins()
        beam_margins.active, beam_margins.margins = None, []
        with torch.no_grad():
            out = model.generate(pixel_values=pixel_values, **extra, **kwargs,
                                 logits_processor=LogitsProcessorList([greedy] if kwargs["num_beams"] == 1 else []))
        rows = out.tolist()
        margins = greedy.margins if kwargs["num_beams"] == 1 else beam_margins.margins
        limit = GREEDY_MARGIN if kwargs["num_beams"] == 1 else BEAM_MARGIN
        assert margins and min(margins) > limit, (name, min(margins) if margins else None)
        # What text_decoder.generate() starts from: [DEC] + the prompt without its final [SEP].
        if conditional:
            start = [[DEC] + r[1:-1] for r in prompt["input_ids"].tolist()]
            start_mask = [r[:-1] for r in prompt["attention_mask"].tolist()]
        else:
            start, start_mask = [[DEC]] * 3, None
        prompt_len = len(start[0])
        assert all(r[:prompt_len] == s for r, s in zip(rows, start))
        end = [ends(r, prompt_len) for r in rows]
        for r, e in zip(rows, end):  # after [SEP], only padding
            if e is not None:
                tail = r[prompt_len + e:]
                assert len(set(tail)) <= 1, (name, r)
        # The kwargs completed with what generate() uses where they are unset: the model's generation_config,
        # else GenerationConfig._get_default_generation_params() (min_new_tokens unset = no minimum = 0).
        gen_config = model.text_decoder.generation_config
        defaults = {**GenerationConfig._get_default_generation_params(), "min_new_tokens": 0}
        resolved = {k: kwargs[k] if k in kwargs else getattr(gen_config, k) if getattr(gen_config, k) is not None
                    else defaults[k] for k in RESOLVED_KEYS}
        assert None not in resolved.values(), resolved
        cases[name] = {
            "conditional": conditional,
            "prompt": PROMPT if conditional else None,
            "input_ids": prompt["input_ids"].tolist() if conditional else None,
            "attention_mask": prompt["attention_mask"].tolist() if conditional else None,
            "decoder_start_ids": start,
            "decoder_start_attention_mask": start_mask,
            "generate_kwargs": kwargs,
            "resolved": resolved,
            "output_ids": rows,
            "decoded": processor.batch_decode(out, skip_special_tokens=True),
            "sep_at": end,
            "min_margin": min(margins),
        }
        if kwargs.get("min_new_tokens"):
            assert all(e is None or e > kwargs["min_new_tokens"] for e in end), (name, end)

    # Acceptance (see the docstring): [SEP] ends some rows early, others run to the end, tokens vary.
    for name in ["greedy", "beam3"]:
        end, max_new = cases[name]["sep_at"], CASES[name][1]["max_new_tokens"]
        assert any(e is not None and e < max_new for e in end) and any(e is None for e in end), (name, end)
    for row, e in zip(cases["greedy"]["output_ids"], cases["greedy"]["sep_at"]):
        gen = row[1:] if e is None else row[1:e]
        assert len(set(gen)) >= min(2, len(gen)), row  # not one token repeated
    assert len(set(cases["greedy"]["output_ids"][0][1:])) >= 8, cases["greedy"]["output_ids"][0]
    assert all(len(r) == 1 + 10 and SEP not in r for r in cases["greedy_min10_max10"]["output_ids"])
    # Padding after [SEP]: greedy pads finished rows with pad_token_id; _beam_search fills with
    # `pad_token_id or eos_token_id` and pad_token_id is 0, so beam rows are filled with [SEP] (102).
    fill = {}
    for name, c in cases.items():
        for r, e in zip(c["output_ids"], c["sep_at"]):
            if e is not None and len(r) > len(c["decoder_start_ids"][0]) + e:
                fill.setdefault("beam" if CASES[name][1]["num_beams"] > 1 else "greedy", set()).update(
                    r[len(c["decoder_start_ids"][0]) + e:])
    assert fill == {"greedy": {PAD}, "beam": {SEP}}, fill

    tensors = {
        "pixel_values": pixel_values.numpy(),
        "vision_last_hidden_state": vision.numpy(),
        "input_ids": input_ids.numpy(),
        "attention_mask": attention_mask.numpy(),
        "logits": logits.numpy(),
    }
    for k, v in tensors.items():
        assert v.dtype == (np.int64 if k in ("input_ids", "attention_mask") else np.float32), (k, v.dtype)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(d / "reference.safetensors"))
    meta = {
        "model": "BlipForConditionalGeneration(BlipConfig(**config)), weights re-drawn (see weights)",
        "config": CONFIG,
        "seed": SEED,
        "weights": {
            "scheme": "after construction with torch.manual_seed(seed), every parameter re-drawn in "
                      "named_parameters order: word embeddings N(0,std_word), text position embeddings "
                      "N(0,std_text_pos), LayerNorm weights N(1,std_norm), other matrices/kernels/embeddings "
                      "N(0,std_matrix), other vectors N(0,std_vector); then cls.predictions.bias[102] += sep_bias",
            "std_word": STD_WORD, "std_text_pos": STD_TEXT_POS, "std_matrix": STD_MATRIX,
            "std_vector": STD_VECTOR, "std_norm": STD_NORM, "sep_bias": SEP_BIAS,
        },
        "tied_lm_head": {
            "saved": ["text_decoder.bert.embeddings.word_embeddings.weight", "text_decoder.cls.predictions.bias"],
            "not_saved": ["text_decoder.cls.predictions.decoder.weight", "text_decoder.cls.predictions.decoder.bias"],
            "rule": "LM head weight = word_embeddings.weight, LM head bias = cls.predictions.bias",
        },
        "special_ids": {"[DEC] bos": DEC, "[ENC]": ENC, "[PAD] pad": PAD, "[CLS]": CLS, "[SEP] sep = generation eos": SEP,
                        "config eos_token_id (unused by generate)": 2},
        "images": MODEL_IMAGES,
        "image_processor_class": type(image_proc).__name__,
        "teacher_forced": {
            "prompts": FORCED_PROMPTS,
            "processor_input_ids": processor_ids.tolist(),
            "input_ids": input_ids.tolist(),
            "attention_mask": attention_mask.tolist(),
            "note": "input_ids = the processor's ids (padding=True, right-padded with [PAD]=0) with ids[:,0] "
                    "[CLS] replaced by [DEC]; fed whole (the trailing [SEP] and the padding included) to "
                    "model(pixel_values, input_ids, attention_mask); logits at every position are stored",
        },
        "generation": {
            "how": "model.generate(pixel_values, [input_ids, attention_mask,] **generate_kwargs) on the batch of "
                   "3 images; BLIP's generate replaces input_ids[:,0] by [DEC], drops the last prompt token "
                   "([SEP]) and the last attention_mask column (decoder_start_ids / _attention_mask), and decodes "
                   "with eos_token_id=[SEP]=102, pad_token_id=0; unconditional starts from [[DEC]]",
            "output_ids": "exactly what generate() returned: start ids + generated ids; rows that finished early "
                          "are filled after their [SEP]: greedy with pad 0, beam search with 102 (_beam_search fills "
                          "with `pad_token_id or eos_token_id`, and pad_token_id is 0)",
            "sep_at": "1-based index of [SEP] among the generated tokens, null if the row ran to max_new_tokens",
            "resolved": "generate_kwargs completed with the values generate() uses when they are unset (transformers "
                        "5 GenerationConfig defaults; min_new_tokens 0 = no minimum)",
            "min_margin": f"smallest decision margin measured (greedy: top1-top2 of the final scores, asserted "
                          f"> {GREEDY_MARGIN}; beam: gaps between deciding candidate scores, asserted > {BEAM_MARGIN})",
            "repetition_penalty": "RepetitionPenaltyLogitsProcessor over all ids so far, prompt and [DEC] included "
                                  "(greedy: on logits; beam: on log_softmax scores)",
            "cases": cases,
        },
        "tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in tensors.items()},
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "tokenizers_version": tokenizers.__version__,
    }
    (d / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    return cases


# ------------------------------------------------------------------------------------- pre-processing

# blip_u8 is stored for these (one of each kind: PNG, baseline JPEG, RGBA, grey, palette GIF, EXIF-rotated
# JPEG); the others have only the sha256 of their blip_u8 bytes in blip_reference.json.
BLIP_U8_STORED = ["astronaut.png", "rocket.jpg", "chelsea_rgba.png", "camera_grey.png", "coffee_palette.gif",
                  "rocket_exif6.jpg"]


def write_preprocess():
    d = OUT / "preprocess"
    assert (d / "reference.json").is_file(), "run models/generate_fixtures.py first (it writes preprocess/)"
    for old in d.glob("blip_*"):
        old.unlink()
    proc = image_processor(384)
    assert (proc.do_center_crop, proc.crop_size) == (None, None)  # BLIP never crops
    proc.to_json_file(str(d / "blip_preprocessor_config.json"))
    settings = json.loads((d / "blip_preprocessor_config.json").read_text())
    assert "do_center_crop" not in settings and "crop_size" not in settings, settings
    assert set(BLIP_U8_STORED) <= set(GOOD_IMAGES)
    tensors = {}
    meta = {
        "processor_class": type(proc).__name__,
        "pipeline": "img = PIL.ImageOps.exif_transpose(PIL.Image.open(path)); then BlipImageProcessorPil: "
                    "transformers.image_transforms.convert_to_rgb (transparency composited onto white, else "
                    "convert('RGB')), PIL bicubic resize of the uint8 image to exactly 384x384 (aspect ratio not "
                    "kept), no centre crop, x rescale_factor, (x-mean)/std",
        "settings": settings,
        "tensors": {
            "<stem>.blip_u8": "uint8 [3,384,384] output with do_normalize=False, x255, only where "
                              "images[stem].blip_u8 is true",
            "astronaut.pixel_values": "float32 [3,384,384] output (normalised) for astronaut.png",
        },
        "pillow": PIL.__version__,
        "transformers_version": transformers.__version__,
        "images": {},
    }
    for file in GOOD_IMAGES:
        stem = Path(file).stem
        u8 = u8_stage(proc, reference_image(IMAGES / file))
        assert u8.shape == (3, 384, 384), u8.shape
        stored = file in BLIP_U8_STORED
        if stored:
            tensors[f"{stem}.blip_u8"] = u8
        meta["images"][stem] = {"file": file, "blip_u8": stored, "blip_u8_shape": list(u8.shape),
                                "blip_u8_sha256": hashlib.sha256(u8.tobytes()).hexdigest()}
    pv = proc(reference_image(IMAGES / "astronaut.png"), return_tensors="np")["pixel_values"][0]
    tensors["astronaut.pixel_values"] = np.ascontiguousarray(pv.astype(np.float32))
    # Self-check: normalising the u8 stage reproduces pixel_values.
    mean, std = np.array(OPENAI_CLIP_MEAN)[:, None, None], np.array(OPENAI_CLIP_STD)[:, None, None]
    again = (tensors["astronaut.blip_u8"].astype(np.float64) / 255.0 - mean) / std
    assert np.abs(again - pv).max() < 1e-5
    save_file(dict(sorted(tensors.items())), str(d / "blip_reference.safetensors"))
    (d / "blip_reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    torch.use_deterministic_algorithms(True)
    cases = write_blip_tiny()
    write_preprocess()
    for name, c in cases.items():
        print(f"{name:24s} sep_at={c['sep_at']} min_margin={c['min_margin']:.2e} {c['decoded']}")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, Pillow {PIL.__version__}, "
          f"tokenizers {tokenizers.__version__}")
    for p in sorted([*(OUT / "blip-tiny").iterdir(), *(OUT / "preprocess").glob("blip_*")]):
        print(f"{hashlib.sha256(p.read_bytes()).hexdigest()[:16]}  {p.stat().st_size:>9}  {p.relative_to(OUT)}")


if __name__ == "__main__":
    main()
