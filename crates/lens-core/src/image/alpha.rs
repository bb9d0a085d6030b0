//! Transparency: compositing onto white as `convert_to_rgb` does, and PNG colour keys as Pillow reads them.
//!
//! transformers 5.23.0 `image_transforms.convert_to_rgb` (lines 778-786), which the image processors run on
//! a PIL image when `do_convert_rgb` is on (`image_processing_backends.py`: `PilBackend.process_image`
//! lines 478-479, the torchvision backend's line 131), does, for an image with an alpha band or a
//! `"transparency"` entry in its `info` (line 779):
//!
//! ```python
//! image = image.convert("RGBA")
//! background = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
//! image_rgb = PIL.Image.alpha_composite(background, image).convert("RGB")
//! ```
//!
//! Pillow 13.0.0's `ImagingAlphaComposite` (`src/libImaging/AlphaComposite.c` lines 57-84) works in integers;
//! [`over_white`] is its arithmetic with the destination fixed to opaque white.
//!
//! How each PIL mode becomes RGBA first (`Image.convert`, `src/PIL/Image.py` lines 1069-1076, 1120-1128 and
//! 1171-1181):
//!
//! - `LA` and `RGBA` carry their alpha (16-bit PNGs are opened as `RGBA` through the `LA;16B` /
//!   `RGBA;16B` unpackers, which keep each sample's high byte: `PngImagePlugin._MODES`, lines 78-99);
//! - `P` with a tRNS chunk gets each palette entry's alpha (`putpalettealphas`; entries past the chunk
//!   stay opaque; a chunk holding a single 0 among 255s becomes `putpalettealpha(i, 0)`: the same thing);
//!   a GIF's transparent index is `putpalettealpha(index, 0)`;
//! - `1`, `L`, `I;16` and `RGB` with a tRNS key go through `convert_transparent` (`src/libImaging/Convert.c`
//!   `ImagingConvertTransparent`, lines 1659-1729, and `rgbT2a`, lines 465-484): the pixel is first
//!   converted to 8-bit RGB (`1` to 0/255, `L;2`/`L;4` scaled by 85/17, `I;16` clipped to 255 by
//!   `I16_RGB`, lines 834-843, 16-bit RGB's high bytes) and becomes fully transparent where that equals the
//!   key masked to its low byte (`r & 0xff`). The key is what `PngImagePlugin.chunk_tRNS` (lines 507-535)
//!   read: the chunk's 16-bit value(s), except in mode `1`, where it is 255 for any non-zero value, else 0.
//!
//! So PIL does not compare the key with the raw sample as the PNG specification says (the `png` crate's
//! own tRNS expansion does): a 4-bit image keyed on 5 has no transparent pixel in PIL, and a 16-bit one
//! keyed on 300 loses the pixels whose value is 44. [`png_colour_key`] gives PIL's key; the caller compares
//! it with the converted pixels.

use super::header::be_u32;

/// Pillow's `alpha_composite(white, (c, a))` for one 8-bit channel `c` with alpha `a`.
///
/// `AlphaComposite.c` with `dst = (255, 255, 255, 255)`: `blend = 255 * (255 - a)`,
/// `outa255 = a * 255 + blend = 65025`, `coef1 = a * 255 * 255 * 128 / outa255 = 128 * a` (exact),
/// `coef2 = 255 * 128 - coef1`, `tmp = c * coef1 + 255 * coef2 + (0x80 << 7)`, and the result is
/// `SHIFTFORDIV255(tmp) >> 7` with `SHIFTFORDIV255(x) = ((x >> 8) + x) >> 8`. For every pair this equals
/// `round((c * a + 255 * (255 - a)) / 255)` (checked exhaustively in the tests), so alpha 255 keeps `c`
/// and alpha 0 gives 255.
#[inline]
pub(super) fn over_white(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    let tmp = 128 * (c * a + 255 * (255 - a)) + (0x80 << 7);
    ((((tmp >> 8) + tmp) >> 8) >> 7) as u8
}

/// An RGB pixel composited onto white with alpha `a`.
#[inline]
pub(super) fn rgb_over_white(rgb: [u8; 3], a: u8) -> [u8; 3] {
    match a {
        255 => rgb,
        0 => WHITE,
        _ => rgb.map(|c| over_white(c, a)),
    }
}

pub(super) const WHITE: [u8; 3] = [255, 255, 255];

/// The colour key PIL applies to a grey or RGB PNG with a tRNS chunk, as an 8-bit RGB pixel: a pixel
/// whose PIL 8-bit RGB conversion equals it becomes white. `None` for every other PNG (no tRNS, or a
/// palette / alpha colour type, whose transparency the decoder's alpha channel carries).
///
/// Like PIL, only chunks before the first IDAT count, and the last tRNS there wins.
pub(super) fn png_colour_key(bytes: &[u8]) -> Option<[u8; 3]> {
    // IHDR is the first chunk (checked by `header::dimensions`): bit depth at 24, colour type at 25.
    let (depth, colour_type) = (*bytes.get(24)?, *bytes.get(25)?);
    if !matches!(colour_type, 0 | 2) {
        return None;
    }
    let mut trns = None;
    let mut pos = 8;
    while let (Some(len), Some(kind)) = (be_u32(bytes, pos), bytes.get(pos + 4..pos + 8)) {
        let Some(data) = (pos + 8).checked_add(len as usize).and_then(|end| bytes.get(pos + 8..end)) else { break };
        pos += 12 + len as usize;
        match kind {
            b"tRNS" => trns = Some(data),
            b"IDAT" | b"IEND" => break,
            _ => {}
        }
    }
    // Shorter chunks are an error in PIL (and in the `png` crate): no key.
    let low = |i: usize| trns.and_then(|t| t.get(2 * i..2 * i + 2)).map(|s| s[1]);
    match colour_type {
        // Mode "1": 255 for any non-zero 16-bit value.
        0 if depth == 1 => trns.and_then(|t| t.get(..2)).map(|s| if s != [0, 0] { WHITE } else { [0; 3] }),
        0 => low(0).map(|k| [k; 3]),
        _ => Some([low(0)?, low(1)?, low(2)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// `ImagingAlphaComposite`'s loop body, transcribed with a general destination pixel.
    fn pillow_alpha_composite(dst: [u32; 4], src: [u32; 4]) -> [u32; 4] {
        if src[3] == 0 {
            return dst;
        }
        let shiftfordiv255 = |a: u32| ((a >> 8) + a) >> 8;
        let blend = dst[3] * (255 - src[3]);
        let outa255 = src[3] * 255 + blend;
        let coef1 = src[3] * 255 * 255 * (1 << 7) / outa255;
        let coef2 = 255 * (1 << 7) - coef1;
        let ch = |i: usize| shiftfordiv255(src[i] * coef1 + dst[i] * coef2 + (0x80 << 7)) >> 7;
        [ch(0), ch(1), ch(2), shiftfordiv255(outa255 + 0x80)]
    }

    #[test]
    fn over_white_is_pillows_alpha_composite_for_every_pair() {
        for a in 0..=255_u8 {
            for c in 0..=255_u8 {
                let pillow = pillow_alpha_composite([255; 4], [c.into(), c.into(), c.into(), a.into()]);
                assert_eq!(pillow[3], 255);
                assert_eq!(u32::from(over_white(c, a)), pillow[0], "c {c} a {a}");
                let rounded = (f64::from(c) * f64::from(a) + 255.0 * f64::from(255 - a)) / 255.0;
                assert_eq!(f64::from(over_white(c, a)), rounded.round(), "c {c} a {a}");
            }
            assert_eq!(rgb_over_white([a, 7, 200], 255), [a, 7, 200]);
        }
        assert_eq!(rgb_over_white([1, 2, 3], 0), WHITE);
        assert_eq!(rgb_over_white([0, 100, 255], 128), [127, 177, 255]);
    }

    fn png(depth: u8, colour_type: u8, chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        v.extend([0, 0, 0, 1, 0, 0, 0, 1, depth, colour_type, 0, 0, 0, 0, 0, 0, 0]);
        for (kind, data) in chunks {
            v.extend((data.len() as u32).to_be_bytes());
            v.extend(*kind);
            v.extend(*data);
            v.extend([0; 4]); // CRC, not checked here
        }
        v
    }

    #[test]
    fn colour_keys_as_pil_reads_them() {
        let key = |depth, ct, trns: &[u8]| png_colour_key(&png(depth, ct, &[(b"tRNS", trns), (b"IDAT", b"")]));
        assert_eq!(key(8, 0, &[0, 7]), Some([7; 3]));
        assert_eq!(key(8, 0, &[1, 0x30]), Some([0x30; 3])); // low byte only
        assert_eq!(key(16, 0, &[1, 0x2C]), Some([0x2C; 3]));
        assert_eq!(key(4, 0, &[0, 5]), Some([5; 3])); // compared with the scaled pixel
        assert_eq!(key(1, 0, &[0, 1]), Some(WHITE));
        assert_eq!(key(1, 0, &[2, 0]), Some(WHITE));
        assert_eq!(key(1, 0, &[0, 0]), Some([0; 3]));
        assert_eq!(key(8, 2, &[0, 1, 0, 2, 0, 3]), Some([1, 2, 3]));
        assert_eq!(key(16, 2, &[1, 1, 2, 2, 3, 3]), Some([1, 2, 3]));
        assert_eq!(key(8, 2, &[0, 1, 0, 2]), None); // truncated
        assert_eq!(key(8, 0, &[7]), None);
        // Palette and alpha colour types carry transparency in the decoder's alpha channel.
        for ct in [3, 4, 6] {
            assert_eq!(key(8, ct, &[0, 7, 0, 7, 0, 7]), None);
        }
        // No tRNS, or one after the image data.
        assert_eq!(png_colour_key(&png(8, 0, &[(b"IDAT", b"")])), None);
        assert_eq!(png_colour_key(&png(8, 0, &[(b"IDAT", b""), (b"tRNS", &[0, 7])])), None);
        // The last one before IDAT wins.
        assert_eq!(png_colour_key(&png(8, 0, &[(b"tRNS", &[0, 7]), (b"tRNS", &[0, 9]), (b"IDAT", b"")])), Some([9; 3]));
        assert_eq!(png_colour_key(b"\x89PNG"), None);
    }
}
