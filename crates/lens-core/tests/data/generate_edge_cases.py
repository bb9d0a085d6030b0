#!/usr/bin/env python3
"""Edge-case fixtures for lens-core's decoder and pre-processor, made with the reference implementation.

models/fixtures/ holds real photos in the common formats; this adds small synthetic files for the
corners those do not reach: every PNG colour type and bit depth, tRNS, short palettes, interlacing,
GIF transparency / frame offsets / local palettes / animation, WebP with alpha, EXIF orientation 1..8
in PNG, WebP and JPEG, orientation given only in XMP, JPEG chroma subsampling and CMYK, and resize
corners (upscaling, zero padding in the crop, one-pass resizes, every Pillow filter); and transparency with
graded alpha in every form Pillow reads (alpha_*: RGBA / LA at 8 and 16 bits, palettes with per-entry tRNS
alpha, grey and RGB colour keys at every bit depth, GIF transparent indices, WebP with alpha), which the
processors composite onto white.

Run from the repository root with the reference environment (models/requirements-reference.txt):

    .venv-ref/bin/python crates/lens-core/tests/data/generate_edge_cases.py

Writes crates/lens-core/tests/data/edge/:
  *.png *.gif *.webp *.jpg    the inputs
  expected.safetensors        <name>.file u8 [n]: the input file's bytes (the tests compile this one file in,
                              so they run on wasm32 too, without a filesystem);
                              <name>.rgb_u8 [H,W,3]: what the processors see of the opened file:
                              convert_to_rgb(exif_transpose(PIL.Image.open(path))) (see reference_rgb);
                              for opaque files that is load_image's exif_transpose + convert("RGB"), for
                              files with alpha or a transparency key the image composited onto white;
                              <case>.u8 [3,h,w]: processor output before normalisation x255;
                              <case>.pixel_values [3,h,w] f32 for a few cases: the normalised output
  expected.json               per input: file, lossless format or not, PIL mode, size; per resize case
                              (CLIPImageProcessorPil) and per BLIP case (BlipImageProcessorPil): the input,
                              the preprocessor_config.json contents, the output shape

Deterministic: every input is seeded (RNG for the original cases, ALPHA_RNG for the alpha_* ones, so that
adding cases never changes an existing file) and Pillow's PNG / GIF / WebP encoders are deterministic;
two runs give identical files.
"""

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL
import PIL.Image
from PIL import PngImagePlugin
from safetensors.numpy import save_file
from PIL import ImageOps
from transformers.image_transforms import convert_to_rgb
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

OUT = Path(__file__).resolve().parent / "edge"
RNG = np.random.default_rng(20260523)
ALPHA_RNG = np.random.default_rng(20261206)


def reference_image(path):
    """The image as Lens's decode_image must see it: opened, and turned upright as load_image does.

    The processors get this PIL image and run convert_to_rgb on it themselves (do_convert_rgb=True:
    transformers/image_processing_backends.py, PilBackend.process_image -> image_transforms.convert_to_rgb),
    which composites anything with an alpha band or a "transparency" entry onto white.
    """
    return ImageOps.exif_transpose(PIL.Image.open(path))


def reference_rgb(path):
    """uint8 [H, W, 3]: convert_to_rgb(exif_transpose(Image.open(path))), what the processors resize."""
    return np.ascontiguousarray(convert_to_rgb(reference_image(path), return_numpy=True), dtype=np.uint8)


def smooth_rgb(h, w, channels=3, rng=RNG):
    """A photo-like image: smooth gradients plus a little noise (so JPEG errors stay small)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 6.28)
        p = 127.5 + 100 * np.sin(fx * x + ph) * np.cos(fy * y - ph) + rng.normal(0, 6, (h, w))
        planes.append(p)
    return np.clip(np.stack(planes, -1), 0, 255).round().astype(np.uint8)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(w, h, bit_depth, color_type, rows, extra=b"", extra_after_idat=b""):
    """A PNG written by hand, for layouts PIL's encoder does not produce (short palettes, 16-bit LA, ...)."""
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw))
            + extra_after_idat + chunk(b"IEND", b""))


def pack_bits(values, bits):
    """Pack one row of samples of `bits` bits (1, 2, 4) MSB first, as PNG does."""
    per_byte = 8 // bits
    out = bytearray()
    for i in range(0, len(values), per_byte):
        b = 0
        for j, v in enumerate(values[i:i + per_byte]):
            b |= int(v) << (8 - bits * (j + 1))
        out.append(b)
    return bytes(out)


def gif_lzw(indices, min_code_size=8):
    """Uncompressed GIF LZW: a clear code before the table would grow, so every code is min+1 bits."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    width = min_code_size + 1
    codes, run = [clear], 0
    for v in indices:
        if run == (1 << min_code_size) - 2:
            codes.append(clear)
            run = 0
        codes.append(int(v))
        run += 1
    codes.append(end)
    acc = nbits = 0
    out = bytearray()
    for c in codes:
        acc |= c << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + bytes(out[i:i + 255]) for i in range(0, len(out), 255))
    return bytes([min_code_size]) + blocks + b"\x00"


def raw_gif(screen, frames, global_palette=None, background=0):
    """frames: dicts with left, top, w, h, indices (row-major), palette (local, optional),
    transparent (index or None), interlaced."""
    sw, sh = screen
    flags = 0
    gp = b""
    if global_palette is not None:
        n = len(global_palette) // 3
        bits = max(1, (n - 1).bit_length())
        flags = 0x80 | (bits - 1) | ((bits - 1) << 4)
        gp = bytes(global_palette) + bytes(3 * (1 << bits) - len(global_palette))
    out = b"GIF89a" + struct.pack("<HHBBB", sw, sh, flags, background, 0) + gp
    for f in frames:
        t = f.get("transparent")
        gce_flags = 1 if t is not None else 0
        out += b"\x21\xf9\x04" + struct.pack("<BHB", gce_flags, 10, t or 0) + b"\x00"
        lflags, lp = 0, b""
        if f.get("palette") is not None:
            n = len(f["palette"]) // 3
            bits = max(1, (n - 1).bit_length())
            lflags = 0x80 | (bits - 1)
            lp = bytes(f["palette"]) + bytes(3 * (1 << bits) - len(f["palette"]))
        idx = np.asarray(f["indices"], dtype=np.uint8).reshape(f["h"], f["w"])
        if f.get("interlaced"):
            lflags |= 0x40
            order = list(range(0, f["h"], 8)) + list(range(4, f["h"], 8)) + list(range(2, f["h"], 4)) + list(
                range(1, f["h"], 2))
            idx = idx[order]
        out += b"\x2c" + struct.pack("<HHHHB", f["left"], f["top"], f["w"], f["h"], lflags) + lp
        out += gif_lzw(idx.reshape(-1))
    return out + b"\x3b"


def exif_bytes(orientation):
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def xmp_packet(orientation):
    return (b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="' + str(orientation).encode() +
            b'"/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def pil_bytes(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def write_inputs():
    files = {}  # name -> (bytes, exact)

    rgb = smooth_rgb(11, 17)
    files["png_rgb_orient1.png"] = (pil_bytes(PIL.Image.fromarray(rgb), "PNG"), True)
    for o in range(2, 9):
        files[f"png_rgb_orient{o}.png"] = (pil_bytes(PIL.Image.fromarray(rgb), "PNG", exif=exif_bytes(o)), True)
    # eXIf after IDAT: PIL still finds it (it loads the whole file before reading EXIF).
    rows = [rgb[y].tobytes() for y in range(rgb.shape[0])]
    files["png_exif_after_idat.png"] = (
        raw_png(17, 11, 8, 2, rows, extra_after_idat=chunk(b"eXIf", exif_bytes(6).removeprefix(b"Exif\x00\x00"))), True)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(8).decode())
    files["png_xmp_orient8.png"] = (pil_bytes(PIL.Image.fromarray(rgb), "PNG", pnginfo=info), True)
    # EXIF orientation wins over XMP.
    files["png_exif3_xmp8.png"] = (pil_bytes(PIL.Image.fromarray(rgb), "PNG", pnginfo=info, exif=exif_bytes(3)), True)
    files["png_orient9_ignored.png"] = (pil_bytes(PIL.Image.fromarray(rgb), "PNG", exif=exif_bytes(9)), True)

    grey = smooth_rgb(9, 13, 1)[..., 0]
    files["png_l8.png"] = (pil_bytes(PIL.Image.fromarray(grey), "PNG"), True)
    for bits in (1, 2, 4):
        vals = RNG.integers(0, 1 << bits, (7, 13))
        files[f"png_l{bits}.png"] = (raw_png(13, 7, bits, 0, [pack_bits(r, bits) for r in vals]), True)
        files[f"png_p{bits}.png"] = (raw_png(13, 7, bits, 3, [pack_bits(r, bits) for r in vals],
                                             extra=chunk(b"PLTE", RNG.integers(0, 256, 3 << bits, dtype=np.uint8).tobytes())), True)
    g16 = np.concatenate([RNG.integers(0, 256, (3, 13)), RNG.integers(0, 65536, (4, 13))]).astype(">u2")
    files["png_l16.png"] = (raw_png(13, 7, 16, 0, [r.tobytes() for r in g16]), True)
    la8 = RNG.integers(0, 256, (7, 13, 2), dtype=np.uint8)
    files["png_la8.png"] = (raw_png(13, 7, 8, 4, [r.tobytes() for r in la8]), True)
    la16 = RNG.integers(0, 65536, (7, 13, 2)).astype(">u2")
    files["png_la16.png"] = (raw_png(13, 7, 16, 4, [r.tobytes() for r in la16]), True)
    rgb16 = RNG.integers(0, 65536, (7, 13, 3)).astype(">u2")
    files["png_rgb16.png"] = (raw_png(13, 7, 16, 2, [r.tobytes() for r in rgb16]), True)
    rgba16 = RNG.integers(0, 65536, (7, 13, 4)).astype(">u2")
    files["png_rgba16.png"] = (raw_png(13, 7, 16, 6, [r.tobytes() for r in rgba16]), True)
    rgba8 = RNG.integers(0, 256, (7, 13, 4), dtype=np.uint8)
    rgba8[..., 3][:, :4] = 0
    files["png_rgba8.png"] = (raw_png(13, 7, 8, 6, [r.tobytes() for r in rgba8]), True)
    idx = RNG.integers(0, 16, (7, 13), dtype=np.uint8)
    pal = RNG.integers(0, 256, 48, dtype=np.uint8).tobytes()
    trns = bytes([0, 128, 255, 7, 0])  # first five entries get alpha; 0 and 4 fully transparent
    files["png_p8_trns.png"] = (raw_png(13, 7, 8, 3, [r.tobytes() for r in idx],
                                        extra=chunk(b"PLTE", pal) + chunk(b"tRNS", trns)), True)
    short = RNG.integers(0, 8, (7, 13), dtype=np.uint8)
    short[0, :4] = [4, 5, 200, 255]  # indices past the 4-entry palette
    files["png_p8_short_palette.png"] = (raw_png(13, 7, 8, 3, [r.tobytes() for r in short],
                                                 extra=chunk(b"PLTE", RNG.integers(0, 256, 12, dtype=np.uint8).tobytes())), True)
    files["png_l8_trns.png"] = (raw_png(13, 9, 8, 0, [r.tobytes() for r in grey],
                                        extra=chunk(b"tRNS", struct.pack(">H", int(grey[0, 0])))), True)
    files["png_rgb8_trns.png"] = (raw_png(17, 11, 8, 2, rows, extra=chunk(b"tRNS", struct.pack(">HHH", *rgb[0, 0]))), True)
    # PIL cannot write Adam7, so this one is made by hand.
    files["png_interlaced.png"] = (adam7_png(smooth_rgb(21, 19)), True)

    # GIF
    pal = RNG.integers(0, 256, 16 * 3, dtype=np.uint8).tolist()
    ind = RNG.integers(0, 16, (6, 10), dtype=np.uint8)
    files["gif_transparent.gif"] = (raw_gif((10, 6), [dict(left=0, top=0, w=10, h=6, indices=ind, transparent=3)],
                                            global_palette=pal), True)
    small = RNG.integers(1, 16, (3, 4), dtype=np.uint8)
    files["gif_offset.gif"] = (raw_gif((10, 6), [dict(left=5, top=2, w=4, h=3, indices=small)],
                                       global_palette=pal, background=7), True)
    files["gif_offset_transparent.gif"] = (raw_gif((10, 6), [dict(left=1, top=1, w=4, h=3, indices=small, transparent=5)],
                                                   global_palette=pal, background=7), True)
    files["gif_frame_beyond_screen.gif"] = (raw_gif((6, 4), [dict(left=3, top=2, w=4, h=3, indices=small)],
                                                    global_palette=pal), True)
    files["gif_local_palette.gif"] = (raw_gif((10, 6), [dict(left=0, top=0, w=10, h=6, indices=ind,
                                                             palette=RNG.integers(0, 256, 48, dtype=np.uint8).tolist())]), True)
    files["gif_animated.gif"] = (raw_gif((10, 6), [dict(left=0, top=0, w=10, h=6, indices=ind),
                                                   dict(left=0, top=0, w=10, h=6, indices=15 - ind)],
                                         global_palette=pal), True)
    tall = RNG.integers(0, 16, (19, 7), dtype=np.uint8)
    files["gif_interlaced.gif"] = (raw_gif((7, 19), [dict(left=0, top=0, w=7, h=19, indices=tall, interlaced=True)],
                                           global_palette=pal), True)
    greypal = [v for i in range(16) for v in (i, i, i)]
    files["gif_grey_palette.gif"] = (raw_gif((10, 6), [dict(left=0, top=0, w=10, h=6, indices=ind)],
                                             global_palette=greypal), True)

    # WebP
    rgba = np.dstack([smooth_rgb(24, 30), RNG.integers(0, 256, (24, 30), dtype=np.uint8)])
    rgba[:, :5, 3] = 0
    files["webp_lossless_alpha.webp"] = (pil_bytes(PIL.Image.fromarray(rgba), "WEBP", lossless=True, exact=True), True)
    files["webp_lossy_alpha.webp"] = (pil_bytes(PIL.Image.fromarray(rgba), "WEBP", quality=85), False)
    files["webp_lossless_orient6.webp"] = (pil_bytes(PIL.Image.fromarray(rgb), "WEBP", lossless=True, exif=exif_bytes(6)), True)
    files["webp_lossy_odd.webp"] = (pil_bytes(PIL.Image.fromarray(smooth_rgb(33, 47)), "WEBP", quality=75), False)

    # JPEG
    photo = smooth_rgb(48, 64)
    for o in (2, 4, 5, 7, 8):
        files[f"jpeg_orient{o}.jpg"] = (pil_bytes(PIL.Image.fromarray(photo), "JPEG", quality=95, exif=exif_bytes(o)), False)
    files["jpeg_xmp_orient6.jpg"] = (pil_bytes(PIL.Image.fromarray(photo), "JPEG", quality=95, xmp=xmp_packet(6)), False)
    for name, sub in (("444", 0), ("422", 1), ("420", 2)):
        files[f"jpeg_{name}.jpg"] = (pil_bytes(PIL.Image.fromarray(smooth_rgb(37, 53)), "JPEG", quality=90, subsampling=sub), False)
    files["jpeg_progressive.jpg"] = (pil_bytes(PIL.Image.fromarray(smooth_rgb(37, 53)), "JPEG", quality=90, progressive=True), False)
    files["jpeg_cmyk.jpg"] = (pil_bytes(PIL.Image.fromarray(smooth_rgb(24, 32, 4), "CMYK"), "JPEG", quality=95), False)
    return files


def write_alpha_inputs():
    """Transparency with graded alpha over photo-like pixels, in every form Pillow reads it.

    convert_to_rgb composites these onto white with Pillow's integer alpha_composite, so every alpha value
    0..255 appears (each 3 times in a 24x32 image) over smooth colours, and one file holds every
    (colour, alpha) pair. Colour keys (tRNS on grey / RGB) are compared the way Pillow compares them: on
    its 8-bit conversion of the pixel, against the key's low byte.
    """
    rng = ALPHA_RNG
    files = {}
    h, w = 24, 32

    def graded(levels=256):
        """[h, w] with every level 0..levels-1 (0 and the maximum included), shuffled over the image."""
        return rng.permutation(np.resize(np.arange(levels), h * w)).reshape(h, w)

    def to16(v8):
        """16-bit samples whose high byte is v8 (what Pillow keeps) and whose low byte is noise."""
        return ((v8.astype(np.uint16) << 8) | rng.integers(0, 256, v8.shape, dtype=np.uint16)).astype(">u2")

    def rows_of(a):
        return [r.tobytes() for r in a]

    photo = smooth_rgb(h, w, rng=rng)
    rgba = np.dstack([photo, graded().astype(np.uint8)])
    files["alpha_rgba8.png"] = (pil_bytes(PIL.Image.fromarray(rgba), "PNG"), True)
    files["alpha_rgba8_orient6.png"] = (pil_bytes(PIL.Image.fromarray(rgba), "PNG", exif=exif_bytes(6)), True)
    # Every (level, alpha) pair: pixel (x, y) has levels 3x, 3x+1, 3x+2 (the last clipped to 255), alpha y.
    x = np.arange(86)
    pairs = np.zeros((256, 86, 4), np.uint8)
    pairs[..., :3] = np.minimum(np.stack([3 * x, 3 * x + 1, 3 * x + 2], -1), 255)[None]
    pairs[..., 3] = np.arange(256)[:, None]
    files["alpha_rgba8_all_pairs.png"] = (pil_bytes(PIL.Image.fromarray(pairs), "PNG"), True)
    files["alpha_rgba16.png"] = (raw_png(w, h, 16, 6, rows_of(to16(rgba))), True)

    grey = smooth_rgb(h, w, 1, rng=rng)[..., 0]
    la = np.dstack([grey, graded().astype(np.uint8)])
    files["alpha_la8.png"] = (raw_png(w, h, 8, 4, rows_of(la)), True)
    files["alpha_la16.png"] = (raw_png(w, h, 16, 4, rows_of(to16(la))), True)

    # Palettes: the photo quantised to 256 colours; tRNS gives each entry its own alpha (0 and 255 included).
    q = PIL.Image.fromarray(photo).quantize(256, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE)
    idx = np.asarray(q, dtype=np.uint8)
    n = int(idx.max()) + 1
    plte = bytes(q.getpalette()[:3 * n])
    entry_alpha = rng.permutation(np.linspace(0, 255, n).round().astype(np.uint8)).tobytes()
    files["alpha_p8_trns.png"] = (raw_png(w, h, 8, 3, rows_of(idx), extra=chunk(b"PLTE", plte) + chunk(b"tRNS", entry_alpha)), True)
    files["alpha_p8_trns_orient3.png"] = (raw_png(w, h, 8, 3, rows_of(idx), extra=chunk(b"PLTE", plte) + chunk(
        b"tRNS", entry_alpha) + chunk(b"eXIf", exif_bytes(3).removeprefix(b"Exif\x00\x00"))), True)
    # One fully transparent entry and the rest opaque: Pillow stores it as an int index, not bytes.
    files["alpha_p8_trns_single.png"] = (raw_png(w, h, 8, 3, rows_of(idx), extra=chunk(b"PLTE", plte) + chunk(
        b"tRNS", b"\xff" * int(idx[0, 0]) + b"\x00")), True)
    # tRNS all 255: "transparency" is set, so convert_to_rgb composites, which changes nothing.
    files["alpha_p8_trns_opaque.png"] = (raw_png(w, h, 8, 3, rows_of(idx), extra=chunk(b"PLTE", plte) + chunk(
        b"tRNS", b"\xff" * n)), True)
    # 4-bit: 16 entries, tRNS shorter than the palette (entries 9..15 stay opaque).
    idx4 = graded(16)
    files["alpha_p4_trns_short.png"] = (raw_png(w, h, 4, 3, [pack_bits(r, 4) for r in idx4], extra=chunk(
        b"PLTE", rng.integers(0, 256, 48, dtype=np.uint8).tobytes()) + chunk(
        b"tRNS", bytes([0, 32, 64, 96, 128, 160, 192, 224, 255]))), True)

    # Grey colour keys. Pillow compares its 8-bit pixel (1-bit: 0/255, 2/4-bit scaled by 85/17, 16-bit
    # clipped to 255) with the key's low byte (1-bit: 255 for any non-zero key), not the raw sample.
    for bits, key in ((1, 1), (2, 0), (2, 85), (4, 5), (4, 17)):
        vals = graded(1 << bits)
        files[f"alpha_l{bits}_trns_key{key}.png"] = (raw_png(w, h, bits, 0, [pack_bits(r, bits) for r in vals],
                                                             extra=chunk(b"tRNS", struct.pack(">H", key))), True)
    files["alpha_l8_trns_key0x130.png"] = (raw_png(w, h, 8, 0, rows_of(grey), extra=chunk(
        b"tRNS", struct.pack(">H", 0x100 | int(grey[3, 5])))), True)
    g16 = to16(grey).astype(np.uint16)
    g16[:6] = rng.choice(np.array([0, 1, 44, 254, 255, 256, 300, 0x2C, 0x12C, 0x1FF, 65535], np.uint16), (6, w))
    files["alpha_l16_trns_key0x12c.png"] = (raw_png(w, h, 16, 0, rows_of(g16.astype(">u2")), extra=chunk(
        b"tRNS", struct.pack(">H", 0x12C))), True)
    files["alpha_l16_trns_key255.png"] = (raw_png(w, h, 16, 0, rows_of(g16.astype(">u2")), extra=chunk(
        b"tRNS", struct.pack(">H", 255))), True)
    # RGB keys: 8-bit over the photo with a block of the key colour; 16-bit, where Pillow compares the
    # pixels' high bytes with the key's low bytes (so the 16-bit key itself never matches here).
    keyed = photo.copy()
    keyed[5:12, 7:20] = photo[0, 0]
    files["alpha_rgb8_trns_block.png"] = (raw_png(w, h, 8, 2, rows_of(keyed), extra=chunk(
        b"tRNS", struct.pack(">HHH", *photo[0, 0]))), True)
    keyed16 = to16(keyed)
    files["alpha_rgb16_trns.png"] = (raw_png(w, h, 16, 2, rows_of(keyed16), extra=chunk(
        b"tRNS", struct.pack(">HHH", *(0x100 | int(v) for v in photo[0, 0])))), True)

    # GIF: a photo through a 64-colour palette with its most common index transparent; and a grey palette
    # (Pillow opens it as "L" and keys on the grey value).
    gq = PIL.Image.fromarray(photo).quantize(64, method=PIL.Image.Quantize.MEDIANCUT, dither=PIL.Image.Dither.NONE)
    gidx = np.asarray(gq, dtype=np.uint8)
    gpal = list(gq.getpalette()[:3 * (int(gidx.max()) + 1)])
    common = int(np.bincount(gidx.reshape(-1)).argmax())
    files["alpha_gif_photo.gif"] = (raw_gif((w, h), [dict(left=0, top=0, w=w, h=h, indices=gidx, transparent=common)],
                                            global_palette=gpal), True)
    greypal = [v for i in range(16) for v in (i, i, i)]
    files["alpha_gif_grey.gif"] = (raw_gif((w, h), [dict(left=0, top=0, w=w, h=h, indices=graded(16), transparent=9)],
                                           global_palette=greypal), True)

    # WebP with graded alpha (lossless keeps the colour under alpha 0 with exact=True).
    files["alpha_webp_lossless.webp"] = (pil_bytes(PIL.Image.fromarray(rgba), "WEBP", lossless=True, exact=True), True)
    files["alpha_webp_lossy.webp"] = (pil_bytes(PIL.Image.fromarray(rgba), "WEBP", quality=85), False)
    return files


def adam7_png(img):
    """An Adam7-interlaced 8-bit RGB PNG (PIL's encoder only writes non-interlaced files)."""
    h, w, _ = img.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = img[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        raw += b"".join(b"\x00" + r.tobytes() for r in sub)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


CLIP = dict(image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])

# name -> (input image file, processor kwargs as they appear in preprocessor_config.json)
RESIZE_CASES = {
    "upscale_bicubic": ("resize_tiny.png", dict(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})),
    "pad_crop": ("resize_small.png", dict(size={"shortest_edge": 20}, crop_size={"height": 30, "width": 26})),
    "int_sizes": ("resize_medium.png", dict(size=37, crop_size=29)),
    "height_width_one_pass": ("resize_medium.png", dict(size={"height": 50, "width": 83}, crop_size={"height": 40, "width": 40})),
    "identity": ("resize_medium.png", dict(size={"shortest_edge": 61}, crop_size={"height": 61, "width": 61})),
    "no_crop": ("resize_medium.png", dict(size={"shortest_edge": 45}, do_center_crop=False)),
    "no_resize": ("resize_medium.png", dict(do_resize=False, crop_size={"height": 70, "width": 70})),
    "bilinear": ("resize_medium.png", dict(size={"shortest_edge": 40}, resample=2, crop_size={"height": 40, "width": 40})),
    "lanczos": ("resize_medium.png", dict(size={"shortest_edge": 40}, resample=1, crop_size={"height": 40, "width": 40})),
    "box": ("resize_medium.png", dict(size={"shortest_edge": 40}, resample=4, crop_size={"height": 40, "width": 40})),
    "hamming": ("resize_medium.png", dict(size={"shortest_edge": 40}, resample=5, crop_size={"height": 40, "width": 40})),
    "lanczos_up": ("resize_tiny.png", dict(size={"shortest_edge": 50}, resample=1, crop_size={"height": 50, "width": 50})),
    "nearest": ("resize_medium.png", dict(size={"shortest_edge": 40}, resample=0, crop_size={"height": 40, "width": 40})),
    "nearest_up": ("resize_tiny.png", dict(size={"shortest_edge": 50}, resample=0, crop_size={"height": 50, "width": 50})),
    "max_height_width": ("resize_medium.png", dict(size={"max_height": 50, "max_width": 50}, crop_size={"height": 40, "width": 40})),
    "shortest_longest": ("resize_medium.png", dict(size={"shortest_edge": 50, "longest_edge": 60}, crop_size={"height": 40, "width": 40})),
    # Graded alpha: the processor composites onto white before resizing.
    "alpha_rgba8": ("alpha_rgba8.png", dict(size={"shortest_edge": 20}, crop_size={"height": 18, "width": 18})),
    "alpha_p8_trns": ("alpha_p8_trns.png", dict(size={"shortest_edge": 28}, crop_size={"height": 24, "width": 24})),
    "alpha_webp_no_resize": ("alpha_webp_lossless.webp", dict(do_resize=False, crop_size={"height": 20, "width": 30})),
}

# Cases whose fully normalised output is stored too (pixel_values, f32): padding and no-resize paths.
NORMALISED_CASES = ["upscale_bicubic", "pad_crop", "no_resize", "alpha_rgba8"]

# BlipImageProcessorPil (resize straight to height x width, no crop) on graded-alpha inputs; every one
# stores its normalised output too.
BLIP_CASES = {
    "blip_alpha_rgba8_orient6": ("alpha_rgba8_orient6.png", dict(size={"height": 20, "width": 28})),
    "blip_alpha_la16": ("alpha_la16.png", dict(size={"height": 30, "width": 26})),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    files = write_inputs()
    files.update(write_alpha_inputs())
    for name, shape in {"resize_tiny.png": (5, 7), "resize_small.png": (25, 40), "resize_medium.png": (61, 83)}.items():
        files[name] = (None, True)
        PIL.Image.fromarray(smooth_rgb(*shape)).save(OUT / name)
    tensors, meta = {}, {"pillow": PIL.__version__, "images": {}, "resize_cases": {}}
    for name, (data, exact) in sorted(files.items()):
        if data is not None:
            (OUT / name).write_bytes(data)
        opened = PIL.Image.open(OUT / name)
        rgb = reference_rgb(OUT / name)
        tensors[f"{Path(name).stem}.rgb_u8"] = rgb
        tensors[f"{Path(name).stem}.file"] = np.frombuffer((OUT / name).read_bytes(), dtype=np.uint8).copy()
        meta["images"][Path(name).stem] = {"file": name, "lossless": exact, "pil_mode": opened.mode,
                                           "width": rgb.shape[1], "height": rgb.shape[0]}
    meta["blip_cases"] = {}
    for cases, processor, key, normalised_cases in ((RESIZE_CASES, CLIPImageProcessorPil, "resize_cases", NORMALISED_CASES),
                                                    (BLIP_CASES, BlipImageProcessorPil, "blip_cases", list(BLIP_CASES))):
        for case, (file, kwargs) in cases.items():
            cfg = dict(do_resize=True, resample=3)
            if processor is CLIPImageProcessorPil:
                cfg["do_center_crop"] = True
            cfg.update(do_rescale=True, rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True, **CLIP)
            cfg.update(kwargs)
            proc = processor(**cfg)
            # The processor gets the opened (upright) PIL image and converts it to RGB itself.
            x = proc(reference_image(OUT / file), do_normalize=False, return_tensors="np")["pixel_values"][0]
            u8 = np.rint(x * 255.0)
            assert np.abs(u8 - x * 255.0).max() < 1e-3
            tensors[f"{case}.u8"] = u8.astype(np.uint8)
            if case in normalised_cases:
                normalised = proc(reference_image(OUT / file), return_tensors="np")["pixel_values"][0]
                tensors[f"{case}.pixel_values"] = np.ascontiguousarray(normalised.astype(np.float32))
            meta[key][case] = {"image": Path(file).stem, "config": cfg, "shape": list(u8.shape)}
    save_file(tensors, str(OUT / "expected.safetensors"))
    (OUT / "expected.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
