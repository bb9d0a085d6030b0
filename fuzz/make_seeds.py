"""Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/seed-*: small images of every
format and variant the decoders handle, images with EXIF in each place it can be, and one example of each
JSON body and document upload. The fuzzing runs (scripts/fuzz.sh) grow the corpora from these; both are
committed. Needs Pillow (pip install pillow); deterministic."""

import hashlib
import io
import json
import struct
import zlib
from pathlib import Path

from PIL import Image

CORPUS = Path(__file__).resolve().parent / "corpus"


def picture(mode: str, size=(8, 6)) -> Image.Image:
    im = Image.new("RGB", size)
    im.putdata([((x * 37) % 256, (y * 53) % 256, ((x + y) * 29) % 256) for y in range(size[1]) for x in range(size[0])])
    if mode == "RGBA":
        im = im.convert("RGBA")
        im.putalpha(Image.linear_gradient("L").resize(size))
        return im
    return im.convert(mode)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def exif(orientation: int) -> bytes:
    e = Image.Exif()
    e[0x0112] = orientation  # Orientation
    e[0x010F] = "Lens"  # Make
    e[0x0110] = "Fuzz 1"  # Model
    e[0x0132] = "2026:12:07 08:00:00"  # DateTime
    return e.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def with_chunk(png: bytes, chunk: bytes) -> bytes:
    # After IHDR (8-byte signature + 25-byte IHDR chunk).
    return png[:33] + chunk + png[33:]


def images() -> dict:
    rgb = picture("RGB")
    animated = io.BytesIO()
    frames = [picture("P"), picture("P").rotate(90)]
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], transparency=0, duration=10, loop=0)
    baseline = encode(rgb, "JPEG", quality=80)
    return {
        "baseline.jpg": baseline,
        "truncated.jpg": baseline[: len(baseline) * 2 // 3],
        "progressive.jpg": encode(rgb, "JPEG", quality=80, progressive=True),
        "grey.jpg": encode(picture("L"), "JPEG"),
        "cmyk.jpg": encode(picture("CMYK"), "JPEG"),
        "subsampled_odd.jpg": encode(picture("RGB", (7, 5)), "JPEG", subsampling=2),
        "rgb.png": encode(rgb, "PNG"),
        "rgba.png": encode(picture("RGBA"), "PNG"),
        "palette_trns.png": encode(picture("P"), "PNG", transparency=3),
        "grey16.png": encode(picture("I;16"), "PNG"),
        "grey_alpha.png": encode(picture("LA"), "PNG"),
        "optimized.png": encode(rgb, "PNG", optimize=True),
        "static.gif": encode(picture("P"), "GIF"),
        "animated.gif": animated.getvalue(),
        "lossy.webp": encode(rgb, "WEBP", quality=60),
        "lossless.webp": encode(rgb, "WEBP", lossless=True),
        "alpha.webp": encode(picture("RGBA"), "WEBP", quality=60),
        "exif6.jpg": encode(rgb, "JPEG", exif=exif(6)),
    }


def exif_carriers() -> dict:
    rgb = picture("RGB")
    png = encode(rgb, "PNG")
    raw = exif(3)
    # ImageMagick's convention: the EXIF as hex in a compressed text chunk.
    profile = b"\nexif\n" + str(len(raw) + 6).encode() + b"\n" + (b"Exif\0\0" + raw).hex().encode() + b"\n"
    return {
        "app1.jpg": encode(rgb, "JPEG", exif=exif(8)),
        "exif_chunk.png": with_chunk(png, png_chunk(b"eXIf", raw)),
        "ztxt_profile.png": with_chunk(png, png_chunk(b"zTXt", b"Raw profile type exif\0\0" + zlib.compress(profile))),
        "exif.webp": encode(rgb, "WEBP", exif=exif(5)),
        "plain.gif": encode(picture("P"), "GIF"),
    }


def requests() -> dict:
    bodies = [
        (0, {"text": "a red rocket", "k": 5, "threshold": 0.2, "tag": "space", "hybrid_weight": 0.3}),
        (0, {"image_id": "0123456789abcdef0123456789abcdef", "k": 1000}),
        (1, {"model": "clip", "input": ["a cat", {"image_url": "https://example.com/a.jpg"}, {"image_id": "ab"}]}),
        (2, {"model": "llava", "messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"},
             {"type": "image_url", "image_url": {"url": "lens://images/0123456789abcdef0123456789abcdef"}}]}],
             "max_tokens": 16, "stream": True, "temperature": 0.7, "stop": ["\n"]}),
        (3, {"url": "https://example.com/a.png", "tags": ["x", "y"]}),
        (3, {"urls": ["https://example.com/a.png", "https://example.com/b.png"], "tags": ["batch"]}),
        (4, {"images": [{"image_id": "0123456789abcdef0123456789abcdef"}], "beams": 3, "max_new_tokens": 20}),
        (4, {"image_url": "lens://images/0123456789abcdef0123456789abcdef", "prompt": "Describe it.", "store": True}),
        (5, {"changes": [{"op": "delete", "seq": 4, "id": "0123456789abcdef0123456789abcdef"}],
             "next_cursor": "4", "more": False, "model": {"id": "clip", "dims": 2}}),
    ]
    return {f"{i}.json": bytes([which]) + json.dumps(body).encode() for i, (which, body) in enumerate(bodies)}


def documents() -> dict:
    return {
        "documents.json": b"\x00" + json.dumps({"documents": [{"text": "Rockets lift off.", "id": "a", "title": "T",
                                                                "metadata": {"k": 1}}]}).encode(),
        "bare.json": b"\x00" + json.dumps([{"text": "one two three four five"}]).encode(),
        "lines.jsonl": b"\x01" + b'{"text": "first line"}\n{"text": "second", "id": "2"}\n',
        "table.csv": b"\x02" + b'id,title,text,lang\n1,"A, B","He said ""hi"" there",en\n2,,second row,fr\n',
    }


def artifact(sections) -> bytes:
    """A Lens model artifact as lens-models' ArtifactWriter lays it out: magic, version, header length, JSON
    header, payload aligned to 64 bytes (each section too), SHA-256 of everything before it."""
    payload, infos = b"", []
    for name, dtype, shape, data in sections:
        payload += b"\0" * (-len(payload) % 64)
        infos.append({"name": name, "dtype": dtype, "shape": shape, "offset": len(payload), "len": len(data)})
        payload += data
    header = json.dumps({"engine": "burn-int8", "family": "clip", "source": {"id": "seed@1", "name": "seed"},
                         "meta": {}, "sections": infos}, separators=(",", ":")).encode()
    out = b"LENSART\0" + struct.pack("<II", 1, len(header)) + header
    out += b"\0" * (-len(out) % 64) + payload
    return out + hashlib.sha256(out).digest()


def model_files() -> dict:
    fixtures = CORPUS.parent.parent / "models" / "fixtures" / "gguf"
    return {
        "gguf": {name: (fixtures / name).read_bytes() for name in ["tiny.gguf", "tiny-be.gguf"]},
        "artifact": {
            "small.lens": artifact([("config.json", "bytes", [], b"{}"),
                                    ("w", "i8", [2, 3], bytes([1, 254, 3, 252, 5, 128])),
                                    ("w.scale", "f32", [2], struct.pack("<2f", 0.5, 0.25))]),
            "empty.lens": artifact([]),
        },
    }


def main() -> None:
    models = model_files()
    for target, files in [("image", images()), ("exif", exif_carriers()), ("request_json", requests()),
                          ("documents", documents()), ("gguf", models["gguf"]), ("artifact", models["artifact"])]:
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (directory / f"seed-{name}").write_bytes(data)
        print(target, len(files), "seeds")


if __name__ == "__main__":
    main()
