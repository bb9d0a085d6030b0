//! Bytes to RGB8: the header checked against the limits first, then the format's decoder, the
//! conversion `convert_to_rgb` makes (transparency composited onto white), and the orientation.

use std::io::Cursor;

use ::image::{ColorType, ImageDecoder, ImageError};

use super::format::ImageFormat;
use super::orientation::{self, apply_orientation};
use super::types::{DecodeLimits, ImageInfo, RgbImage, check_dimensions, check_gif_dimensions};
use super::{alpha, gif, header, jpeg};
use crate::{Error, Result};

/// Reads the format, the stored dimensions and the orientation from the headers, and applies the limits.
///
/// Cheap: no pixel data is decoded and nothing proportional to the image size is allocated.
pub fn probe_image(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageInfo> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::TooLarge { bytes: bytes.len(), limit: limits.max_bytes });
    }
    let format = ImageFormat::from_signature(bytes)
        .ok_or_else(|| Error::UnsupportedFormat { format: None, detail: "not a JPEG, PNG, GIF or WebP file".into() })?;
    let (width, height) = header::dimensions(format, bytes)?;
    if format == ImageFormat::Gif {
        check_gif_dimensions(width, height, limits)?;
    } else {
        check_dimensions(width, height, limits)?;
    }
    let orientation = orientation::orientation(format, bytes);
    Ok(ImageInfo { format, width, height, orientation })
}

/// Decodes an image to RGB8 as the image processors see it: PIL open, `exif_transpose`, then
/// `convert_to_rgb`, which composites transparency onto white (see the module docs). For opaque images
/// that is `load_image`'s `convert("RGB")`.
///
/// For animated GIF and WebP, the first frame.
///
/// # Errors
/// [`Error::TooLarge`], [`Error::TooManyPixels`] or [`Error::DimensionTooLarge`] past the limits (checked
/// from the header, before decoding); [`Error::UnsupportedFormat`] for anything that is not one of the four
/// formats or uses a feature the decoders do not support; [`Error::Corrupt`] for truncated or malformed data.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage> {
    let info = probe_image(bytes, limits)?;
    let cursor = Cursor::new(bytes);
    let fail = |e: ImageError| from_image_error(info.format, e);
    let img = match info.format {
        ImageFormat::Jpeg => jpeg::decode(bytes, limits)?,
        ImageFormat::Png => {
            let decoder = ::image::codecs::png::PngDecoder::with_limits(cursor, image_limits(limits)).map_err(fail)?;
            decode_with(decoder, info, limits, alpha::png_colour_key(bytes))?
        }
        ImageFormat::WebP => {
            let decoder = ::image::codecs::webp::WebPDecoder::new(cursor).map_err(fail)?;
            decode_with(decoder, info, limits, None)?
        }
        ImageFormat::Gif => gif::decode(bytes, limits)?,
    };
    Ok(apply_orientation(img, info.orientation))
}

/// The same limits for the `image` crate's decoders: sides, and allocations sized for the largest
/// pixel type they produce (16-bit RGBA, 8 bytes a pixel) plus decoder working memory.
fn image_limits(limits: &DecodeLimits) -> ::image::Limits {
    let mut l = ::image::Limits::default();
    l.max_image_width = Some(limits.max_dimension);
    l.max_image_height = Some(limits.max_dimension);
    l.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    l
}

/// Runs one of the `image` crate's decoders and converts its output as `convert_to_rgb` would.
///
/// `key` is PIL's colour key for a grey or RGB PNG with tRNS ([`alpha::png_colour_key`]); with one, the
/// alpha channel the `png` crate derived from the tRNS chunk (by the PNG specification's rule, not PIL's)
/// is ignored and the key decides.
///
/// One buffer: the decoder writes into it and the conversion to RGB8 happens in place.
fn decode_with(
    mut decoder: impl ImageDecoder,
    info: ImageInfo,
    limits: &DecodeLimits,
    key: Option<[u8; 3]>,
) -> Result<RgbImage> {
    let format = info.format;
    decoder.set_limits(image_limits(limits)).map_err(|e| from_image_error(format, e))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    if (width, height) != (info.width, info.height) {
        return Err(Error::Corrupt {
            format,
            detail: format!("header says {}x{}, decoder says {width}x{height}", info.width, info.height),
        });
    }
    let color = decoder.color_type();
    let decoded_len = decoder.total_bytes() as usize;
    let rgb_len = width as usize * height as usize * 3;
    let mut buf = Vec::with_capacity(decoded_len.max(rgb_len));
    buf.resize(decoded_len, 0);
    decoder.read_image(&mut buf).map_err(|e| from_image_error(format, e))?;
    if !to_rgb(&mut buf, color, key) {
        return Err(Error::UnsupportedFormat { format: Some(format), detail: format!("pixel type {color:?}") });
    }
    debug_assert_eq!(buf.len(), rgb_len);
    Ok(RgbImage { width, height, data: buf })
}

/// Turns the decoder's pixels (`buf`, one `color` pixel after another) into RGB8 in place, as
/// `convert_to_rgb` turns the mode PIL would have opened the file in: colour conversion as PIL's, then,
/// for an alpha channel, compositing onto white, or, with a colour `key`, white where the converted pixel
/// equals the key. `false` for a pixel type no supported file decodes to.
fn to_rgb(buf: &mut Vec<u8>, color: ColorType, key: Option<[u8; 3]>) -> bool {
    // 16-bit samples arrive in native byte order; PIL's 16-bit unpackers (`RGB;16B`, `LA;16B`, ...)
    // keep the most significant byte.
    fn hi(s: [u8; 2]) -> u8 {
        (u16::from_ne_bytes(s) >> 8) as u8
    }
    // PIL opens 16-bit grey PNG as `I;16`, whose conversions to RGB and RGBA clip to 255 (`I16_RGB`).
    fn clip(s: [u8; 2]) -> u8 {
        u16::from_ne_bytes(s).min(255) as u8
    }
    let keyed = |rgb: [u8; 3]| if Some(rgb) == key { alpha::WHITE } else { rgb };
    match color {
        ColorType::Rgb8 if key.is_none() => {}
        ColorType::Rgb8 => map_pixels(buf, |p: [u8; 3]| keyed(p)),
        ColorType::Rgba8 if key.is_some() => map_pixels(buf, |p: [u8; 4]| keyed([p[0], p[1], p[2]])),
        ColorType::Rgba8 => map_pixels(buf, |p: [u8; 4]| alpha::rgb_over_white([p[0], p[1], p[2]], p[3])),
        ColorType::L8 => map_pixels(buf, |[v]: [u8; 1]| keyed([v; 3])),
        ColorType::La8 if key.is_some() => map_pixels(buf, |[v, _]: [u8; 2]| keyed([v; 3])),
        ColorType::La8 => map_pixels(buf, |[v, a]: [u8; 2]| alpha::rgb_over_white([v; 3], a)),
        ColorType::L16 => map_pixels(buf, |[v0, v1]: [u8; 2]| keyed([clip([v0, v1]); 3])),
        ColorType::La16 if key.is_some() => map_pixels(buf, |p: [u8; 4]| keyed([clip([p[0], p[1]]); 3])),
        // PIL opens 16-bit grey + alpha as RGBA through `LA;16B`: the high bytes of grey and alpha.
        ColorType::La16 => map_pixels(buf, |p: [u8; 4]| alpha::rgb_over_white([hi([p[0], p[1]]); 3], hi([p[2], p[3]]))),
        ColorType::Rgb16 => map_pixels(buf, |p: [u8; 6]| keyed([hi([p[0], p[1]]), hi([p[2], p[3]]), hi([p[4], p[5]])])),
        ColorType::Rgba16 => map_pixels(buf, |p: [u8; 8]| {
            let rgb = [hi([p[0], p[1]]), hi([p[2], p[3]]), hi([p[4], p[5]])];
            if key.is_some() { keyed(rgb) } else { alpha::rgb_over_white(rgb, hi([p[6], p[7]])) }
        }),
        _ => return false,
    }
    true
}

/// Replaces each `N`-byte pixel of `buf` by `f(pixel)`, 3 bytes, in place. Shrinking (`N >= 3`) goes
/// forwards, growing (`N < 3`) backwards after extending `buf`, so no pixel is overwritten before it is
/// read; `buf` ends up exactly 3 bytes a pixel.
fn map_pixels<const N: usize>(buf: &mut Vec<u8>, f: impl Fn([u8; N]) -> [u8; 3]) {
    let n = buf.len() / N;
    let step = |buf: &mut [u8], i: usize| {
        let px: [u8; N] = buf[i * N..i * N + N].try_into().expect("N bytes");
        buf[i * 3..i * 3 + 3].copy_from_slice(&f(px));
    };
    if N >= 3 {
        (0..n).for_each(|i| step(buf, i));
        buf.truncate(n * 3);
    } else {
        buf.resize(n * 3, 0);
        (0..n).rev().for_each(|i| step(buf, i));
    }
}

fn from_image_error(format: ImageFormat, e: ImageError) -> Error {
    match e {
        ImageError::Unsupported(e) => Error::UnsupportedFormat { format: Some(format), detail: e.to_string() },
        // Limits were checked from the header already; this is the decoders' working memory.
        ImageError::Limits(e) => Error::Corrupt { format, detail: format!("decoder limit: {e}") },
        e => Error::Corrupt { format, detail: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        v.extend(width.to_be_bytes());
        v.extend(height.to_be_bytes());
        v.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]); // depth, colour type, methods, (bogus) CRC
        v
    }

    #[test]
    fn limits_are_checked_from_the_header() {
        let limits = DecodeLimits::default();
        let bomb = png_header(100_000, 100_000);
        assert!(matches!(
            decode_image(&bomb, &limits),
            Err(Error::TooManyPixels { width: 100_000, height: 100_000, .. })
        ));
        let long = png_header(20_000, 10);
        assert!(matches!(probe_image(&long, &limits), Err(Error::DimensionTooLarge { limit: 16384, .. })));
        let small = DecodeLimits { max_bytes: 10, ..limits };
        assert!(matches!(probe_image(&bomb, &small), Err(Error::TooLarge { limit: 10, .. })));
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        let limits = DecodeLimits::default();
        for junk in [&b""[..], b"hello", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"\xFF\xD8\xFF"] {
            assert!(decode_image(junk, &limits).is_err(), "{junk:?}");
        }
        assert!(matches!(decode_image(b"hello", &limits), Err(Error::UnsupportedFormat { format: None, .. })));
        let zero = png_header(0, 5);
        assert!(matches!(decode_image(&zero, &limits), Err(Error::Corrupt { format: ImageFormat::Png, .. })));
    }

    fn converted(buf: &[u8], color: ColorType, key: Option<[u8; 3]>) -> Option<Vec<u8>> {
        let mut buf = buf.to_vec();
        to_rgb(&mut buf, color, key).then_some(buf)
    }

    fn ne16(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn rgb_conversion_follows_pil() {
        assert_eq!(converted(&[1, 2, 3, 4, 5, 6], ColorType::Rgb8, None), Some(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(converted(&[9, 200], ColorType::L8, None), Some(vec![9, 9, 9, 200, 200, 200]));
        let l16 = ne16(&[7, 300]);
        assert_eq!(converted(&l16, ColorType::L16, None), Some(vec![7, 7, 7, 255, 255, 255]));
        let rgb16 = ne16(&[0x12FF, 0x3400, 0xFF01]);
        assert_eq!(converted(&rgb16, ColorType::Rgb16, None), Some(vec![0x12, 0x34, 0xFF]));
        assert_eq!(converted(&[0; 12], ColorType::Rgb32F, None), None);
    }

    #[test]
    fn alpha_is_composited_onto_white() {
        // Alpha 255 keeps the colour, alpha 0 is white whatever the colour, the rest rounds as Pillow does.
        let rgba = [1, 2, 3, 255, 1, 2, 3, 0, 0, 100, 255, 128];
        assert_eq!(converted(&rgba, ColorType::Rgba8, None), Some(vec![1, 2, 3, 255, 255, 255, 127, 177, 255]));
        assert_eq!(
            converted(&[9, 255, 9, 0, 100, 128], ColorType::La8, None),
            Some(vec![9, 9, 9, 255, 255, 255, 177, 177, 177])
        );
        // 16-bit: high bytes of colour and alpha; the low bytes play no part.
        let la16 = ne16(&[0x64FF, 0x80FF, 0x6400, 0x0001]);
        assert_eq!(converted(&la16, ColorType::La16, None), Some(vec![177, 177, 177, 255, 255, 255]));
        let rgba16 = ne16(&[0x00FF, 0x6412, 0xFF00, 0x8077]);
        assert_eq!(converted(&rgba16, ColorType::Rgba16, None), Some(vec![127, 177, 255]));
    }

    #[test]
    fn colour_keys_replace_the_decoders_alpha() {
        // The png crate's alpha (here 0 everywhere) is ignored: the key, on the converted pixel, decides.
        let key = Some([44; 3]);
        assert_eq!(converted(&[44, 0, 45, 0], ColorType::La8, key), Some(vec![255, 255, 255, 45, 45, 45]));
        let la16 = ne16(&[44, 0, 300, 0, 0x2C00, 0]);
        assert_eq!(converted(&la16, ColorType::La16, key), Some(vec![255, 255, 255, 255, 255, 255, 255, 255, 255]));
        let la16 = ne16(&[43, 0, 300, 0]);
        assert_eq!(converted(&la16, ColorType::La16, Some([255; 3])), Some(vec![43, 43, 43, 255, 255, 255]));
        let rgba = [1, 2, 3, 255, 1, 2, 4, 0];
        assert_eq!(converted(&rgba, ColorType::Rgba8, Some([1, 2, 3])), Some(vec![255, 255, 255, 1, 2, 4]));
        // 16-bit: the pixel's high bytes against the key (the alpha channel again plays no part).
        let rgba16 = ne16(&[0x0155, 0x0266, 0x0377, 0xFFFF, 0x0103, 0x0202, 0x0401, 0]);
        assert_eq!(converted(&rgba16, ColorType::Rgba16, Some([1, 2, 3])), Some(vec![255, 255, 255, 1, 2, 4]));
        assert_eq!(converted(&[5, 6], ColorType::L8, Some([5; 3])), Some(vec![255, 255, 255, 6, 6, 6]));
    }

    #[test]
    fn buffer_length_is_checked() {
        assert!(RgbImage::new(2, 2, vec![0; 12]).is_ok());
        assert!(matches!(RgbImage::new(2, 2, vec![0; 11]), Err(Error::BufferSize { expected: 12, .. })));
        assert_eq!(RgbImage::filled(2, 1, [1, 2, 3]).pixel(1, 0), [1, 2, 3]);
    }
}
