#!/usr/bin/env python3
"""Export the tiny CLIP to ONNX, fp32 and int8, as the published CLIP ONNX services lay it out, offline.

Run from the repository root, after models/generate_fixtures.py (it reads what that script wrote):

    HF_HUB_OFFLINE=1 /work/ref-venv/bin/python models/generate_onnx_fixtures.py

Needs, besides the reference environment of models/requirements-reference.txt (torch 2.15, transformers
5.23, safetensors, Pillow, numpy; NOT torchvision, see generate_fixtures.py):
    onnx 1.23.2            reading/checking the graphs
    onnxruntime 1.32.0     `quantization.quantize_dynamic` for the int8 graphs, and their reference outputs
(`pip install onnx==1.23.2 onnxruntime==1.32.0`). torch.onnx's TorchScript exporter (`dynamo=False`) is
used: it runs offline without onnxscript and emits plain opset-17 ops that tract-onnx 0.23 implements.

Input: models/fixtures/clip-tiny-quickgelu (the committed tiny random CLIPModel) and models/fixtures/images, each
photo given to the processor as `ImageOps.exif_transpose(Image.open(path))` (generate_fixtures.reference_image):
the processor's convert_to_rgb composites chelsea_rgba.png's alpha onto white (load_image would drop it).

Writes models/fixtures/clip-tiny-onnx/:

  fp32/, int8/                 each a directory `lens models pack` takes:
      visual.onnx              pixel_values f32 [batch, 3, 32, 32] -> image_embeds f32 [batch, 24]
                               (CLIPModel.get_image_features: projected, not normalised)
      textual.onnx             input_ids i64 [batch, seq] -> text_embeds f32 [batch, 24]
                               (get_text_features; pooled at the argmax token id, the legacy eos_token_id=2
                               rule, so padding after <|endoftext|> changes nothing and no mask is needed)
      config.json, preprocessor_config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json
                               copied from clip-tiny-quickgelu
    fp32: torch.onnx.export, dynamic batch (and seq) axes, constant folding.
    int8: onnxruntime.quantization.quantize_dynamic(fp32 graph, QInt8 weights, per tensor): weights int8,
          activations quantized at run time (DynamicQuantizeLinear -> MatMulInteger / ConvInteger).
  reference.safetensors        pixel_values    f32 [12, 3, 32, 32]  CLIPImageProcessorPil output for the 12
                                                                    decodable photos of images/ (REF_IMAGES order)
                               input_ids       i64 [8, 77]          the tokenizer's ids of TEXTS, padded to 77
                               fp32.image_embeds / fp32.text_embeds  PyTorch fp32 (get_*_features)
                               ort_fp32.image_embeds / .text_embeds  onnxruntime on the fp32 graphs
                               int8.image_embeds / int8.text_embeds  onnxruntime on the int8 graphs
  reference.json               images, texts, op types of each graph, the tolerances checked here

Self-checks before writing: onnxruntime's fp32 outputs within 1e-5 relative L2 of PyTorch; every op of
every graph in TRACT_OPS (the ops tract-onnx 0.23.9 registers that these graphs use); int8 vs fp32 cosine
>= 0.99 per embedding. Seeded and run on 2 threads: re-running reproduces every file byte for byte
on one machine. Across CPUs the weights, the images and everything computed in numpy or Pillow
stay byte-identical, but PyTorch's float outputs differ in the last bits (~1e-6 absolute, measured
between the committed files and a regeneration on another CPU in December 2026): far inside the
tests' tolerances.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image, ImageOps
from safetensors.numpy import save_file
from transformers import CLIPModel, CLIPTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = Path(__file__).resolve().parent  # models/
FIXTURES = ROOT / "fixtures"
SOURCE = FIXTURES / "clip-tiny-quickgelu"
OUT = FIXTURES / "clip-tiny-onnx"
OPSET = 17

COPIED = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
          "special_tokens_map.json"]

# The 12 photos generate_fixtures.py writes that decode (the two broken files are left out).
REF_IMAGES = [
    "astronaut.png", "rocket.jpg", "coffee.jpg", "chelsea_rgba.png", "camera_grey.png", "coins_grey.jpg",
    "chelsea_palette.png", "coffee_palette.gif", "astronaut_lossless.webp", "coffee_lossy.webp",
    "rocket_exif6.jpg", "coffee_exif3.jpg",
]
TEXTS = [
    "a photo of a cat",
    "a photo of a dog",
    "an astronaut in a white space suit",
    "a rocket launching into the sky",
    "a cup of coffee on a table",
    "a grey coin",
    "",
    "a very long description of a photograph that keeps going with many words about colours shapes light "
    "shadows people animals buildings streets skies clouds mountains rivers and the sea " * 2,
]

# Ops tract-onnx 0.23.9 registers (src/ops/**: `reg.insert`), restricted to what CLIP graphs need.
TRACT_OPS = {
    "Add", "ArgMax", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvInteger", "DequantizeLinear",
    "Div", "DynamicQuantizeLinear", "Equal", "Erf", "Expand", "Flatten", "Gather", "GatherElements", "GatherND",
    "Gemm", "Identity", "LayerNormalization", "MatMul", "MatMulInteger", "Mul", "Neg", "Pow", "Range",
    "ReduceMean", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt", "Squeeze", "Sub", "Transpose",
    "Trilu", "Unsqueeze", "Where", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Max",
    "Min", "Tile", "Sum",
}

FP32_VS_TORCH_REL_L2 = 1e-5
INT8_MIN_COSINE = 0.99


class Visual(torch.nn.Module):
    def __init__(self, model: CLIPModel):
        super().__init__()
        self.vision_model, self.visual_projection = model.vision_model, model.visual_projection

    def forward(self, pixel_values):
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)


class Textual(torch.nn.Module):
    def __init__(self, model: CLIPModel):
        super().__init__()
        self.text_model, self.text_projection = model.text_model, model.text_projection

    def forward(self, input_ids):
        return self.text_projection(self.text_model(input_ids=input_ids).pooler_output)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def op_types(path: Path) -> list:
    return sorted({n.op_type for n in onnx.load(str(path)).graph.node})


def run_ort(path: Path, feeds: dict) -> np.ndarray:
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    session = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def export(model: CLIPModel, d: Path, pixel_values: torch.Tensor, input_ids: torch.Tensor):
    torch.onnx.export(
        Visual(model), (pixel_values[:2],), str(d / "visual.onnx"), dynamo=False, opset_version=OPSET,
        input_names=["pixel_values"], output_names=["image_embeds"],
        dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}, do_constant_folding=True)
    torch.onnx.export(
        Textual(model), (input_ids[:2],), str(d / "textual.onnx"), dynamo=False, opset_version=OPSET,
        input_names=["input_ids"], output_names=["text_embeds"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "text_embeds": {0: "batch"}}, do_constant_folding=True)
    for name in ["visual.onnx", "textual.onnx"]:
        graph = onnx.load(str(d / name))
        onnx.checker.check_model(graph)
        # Drop the exporter's doc strings (they hold source paths), so the files do not depend on the checkout.
        graph.producer_version = ""
        for node in graph.graph.node:
            node.doc_string = ""
        onnx.save(graph, str(d / name))


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)
    if OUT.exists():
        shutil.rmtree(OUT)
    fp32, int8 = OUT / "fp32", OUT / "int8"
    for d in [fp32, int8]:
        d.mkdir(parents=True)
        for f in COPIED:
            shutil.copyfile(SOURCE / f, d / f)

    model = CLIPModel.from_pretrained(str(SOURCE), attn_implementation="eager").eval()
    proc = CLIPImageProcessorPil.from_pretrained(str(SOURCE))
    tokenizer = CLIPTokenizerFast.from_pretrained(str(SOURCE), local_files_only=True)
    # As generate_fixtures.reference_image (not imported: that module needs scikit-image).
    images = [ImageOps.exif_transpose(Image.open(FIXTURES / "images" / f)) for f in REF_IMAGES]
    pixel_values = proc(images, return_tensors="pt")["pixel_values"].to(torch.float32)
    enc = tokenizer(TEXTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    input_ids = enc["input_ids"].to(torch.int64)
    with torch.no_grad():
        image_embeds = Visual(model)(pixel_values).numpy()
        text_embeds = Textual(model)(input_ids).numpy()
        # The mask-free textual graph equals get_text_features with the mask (padding follows the pooled EOS).
        with_mask = model.get_text_features(input_ids=input_ids, attention_mask=enc["attention_mask"])
        with_mask = getattr(with_mask, "pooler_output", with_mask).numpy()
        assert rel_l2(text_embeds, with_mask) < 1e-6, rel_l2(text_embeds, with_mask)

    export(model, fp32, pixel_values, input_ids)
    for name in ["visual.onnx", "textual.onnx"]:
        quantize_dynamic(str(fp32 / name), str(int8 / name), weight_type=QuantType.QInt8, per_channel=False)

    pv, ids = pixel_values.numpy(), input_ids.numpy()
    tensors = {"pixel_values": pv, "input_ids": ids, "fp32.image_embeds": image_embeds,
               "fp32.text_embeds": text_embeds}
    checks = {}
    for precision, d in [("ort_fp32", fp32), ("int8", int8)]:
        tensors[f"{precision}.image_embeds"] = run_ort(d / "visual.onnx", {"pixel_values": pv})
        tensors[f"{precision}.text_embeds"] = run_ort(d / "textual.onnx", {"input_ids": ids})
    for kind in ["image_embeds", "text_embeds"]:
        err = rel_l2(tensors[f"ort_fp32.{kind}"], tensors[f"fp32.{kind}"])
        assert err < FP32_VS_TORCH_REL_L2, (kind, err)
        cos = cosines(tensors[f"int8.{kind}"], tensors[f"fp32.{kind}"])
        assert cos.min() >= INT8_MIN_COSINE, (kind, cos)
        checks[kind] = {"ort_fp32_vs_torch_rel_l2": err, "int8_vs_fp32_min_cosine": float(cos.min()),
                        "int8_vs_fp32_rel_l2": rel_l2(tensors[f"int8.{kind}"], tensors[f"fp32.{kind}"])}
    ops = {f"{p}/{n}": op_types(OUT / p / n) for p in ["fp32", "int8"] for n in ["visual.onnx", "textual.onnx"]}
    for graph, used in ops.items():
        missing = set(used) - TRACT_OPS
        assert not missing, f"{graph} uses ops tract-onnx 0.23 does not run: {missing}"

    for k, v in tensors.items():
        assert v.dtype == (np.int64 if k == "input_ids" else np.float32), (k, v.dtype)
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, str(OUT / "reference.safetensors"))
    meta = {
        "source": "clip-tiny-quickgelu",
        "images": REF_IMAGES,
        "texts": TEXTS,
        "opset": OPSET,
        "int8": "onnxruntime.quantization.quantize_dynamic(weight_type=QInt8, per_channel=False)",
        "ops": ops,
        "checks": checks,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
    }
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    for p in sorted(OUT.rglob("*.onnx")):
        print(f"{p.relative_to(OUT)}: {p.stat().st_size} bytes")
    print(json.dumps(checks, indent=1))


if __name__ == "__main__":
    main()
