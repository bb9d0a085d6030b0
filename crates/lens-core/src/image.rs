//! Image decoding: encoded bytes in, RGB8 pixels out, the way the Python reference loads images.
//!
//! The reference is `transformers.image_utils.load_image(path)`: `PIL.Image.open`, then
//! `PIL.ImageOps.exif_transpose`, then `.convert("RGB")` (Pillow 13.0.0). [`decode_image`] reproduces it:
//!
//! - formats are recognised by their signature, never by a file name: JPEG, PNG, GIF, WebP;
//! - the header's dimensions are checked against [`DecodeLimits`] before anything is decoded (a
//!   decompression bomb is rejected without allocating its pixels), and the decoders get the same limits;
//! - conversion to RGB follows PIL's `convert("RGB")`: alpha is dropped, not composited; grey is
//!   replicated; palettes are expanded, transparent entries keeping their colour; 16-bit PNG samples
//!   keep their high byte, except 16-bit greyscale, which PIL clips to 255 (its `I;16` -> `RGB`);
//! - the EXIF orientation (or, failing that, the XMP one) is applied as `exif_transpose` does.
//!
//! Decoders: JPEG by this crate's port of libjpeg-turbo's decompression path (`src/image/jpeg.rs`; the
//! `image` crate's zune-jpeg differs from libjpeg-turbo by up to 6 levels on 4:2:0 photos); GIF by the
//! `gif` crate, composed as PIL composes it; PNG and WebP by the `image` crate (png, image-webp). All of
//! them match Pillow 13's output bit for bit on the test fixtures, lossy WebP included.
//!
//! Nothing here does I/O: every function takes the whole file as a byte slice.

mod gif;
mod header;
mod jpeg;
mod orientation;

use std::fmt;
use std::io::Cursor;

use ::image::{ColorType, ImageDecoder, ImageError};

pub use orientation::apply_orientation;
pub(crate) use orientation::read_tags;

use crate::{Error, Result};

/// The encoded formats Lens accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    WebP,
}

impl ImageFormat {
    /// The format named by the file's signature, or `None` for anything else.
    pub fn from_signature(bytes: &[u8]) -> Option<Self> {
        header::sniff_format(bytes)
    }

    /// The IANA media type (`image/jpeg`, ...).
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::WebP => "image/webp",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Gif => "GIF",
            Self::WebP => "WebP",
        })
    }
}

/// Limits applied before and during decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded input, in bytes.
    pub max_bytes: usize,
    /// Largest accepted `width * height` (the decompression-bomb guard).
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_dimension: u32,
}

impl Default for DecodeLimits {
    /// 64 MiB, 64 megapixels, 16384 pixels a side.
    fn default() -> Self {
        Self { max_bytes: 64 << 20, max_pixels: 64 << 20, max_dimension: 16384 }
    }
}

/// An 8-bit RGB image.
///
/// # Shapes
/// `data` is `[height, width, 3]` row-major, channels interleaved (HWC, as `np.asarray(pil_image)`):
/// the pixel at `(x, y)` is `data[(y * width + x) * 3..][..3]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Wraps an interleaved RGB buffer, checking its length.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        let expected = width as usize * height as usize * 3;
        if data.len() != expected {
            return Err(Error::BufferSize { width, height, len: data.len(), expected });
        }
        Ok(Self { width, height, data })
    }

    /// An image filled with one colour.
    pub fn filled(width: u32, height: u32, rgb: [u8; 3]) -> Self {
        let data = rgb.repeat(width as usize * height as usize);
        Self { width, height, data }
    }

    /// The pixel at `(x, y)`.
    ///
    /// # Panics
    /// If `(x, y)` is outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        assert!(x < self.width && y < self.height, "pixel ({x}, {y}) outside {}x{}", self.width, self.height);
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }
}

impl fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RgbImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("data", &format_args!("[{} bytes]", self.data.len()))
            .finish()
    }
}

/// What the headers say about an image, read without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    /// Width as stored, before the orientation is applied.
    pub width: u32,
    /// Height as stored, before the orientation is applied.
    pub height: u32,
    /// The EXIF orientation (1..=8; 1 when absent), found where PIL finds it. Values 5..=8 swap the sides.
    pub orientation: u16,
}

impl ImageInfo {
    /// `(width, height)` once the orientation is applied: the size [`decode_image`] returns (for a GIF
    /// whose first frame extends past its screen, the decoded canvas is larger; PIL grows it too).
    pub fn oriented_dimensions(&self) -> (u32, u32) {
        if (5..=8).contains(&self.orientation) { (self.height, self.width) } else { (self.width, self.height) }
    }
}

/// Reads the format, the stored dimensions and the orientation from the headers, and applies the limits.
///
/// Cheap: no pixel data is decoded and nothing proportional to the image size is allocated.
pub fn probe_image(bytes: &[u8], limits: &DecodeLimits) -> Result<ImageInfo> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::TooLarge { bytes: bytes.len(), limit: limits.max_bytes });
    }
    let format = header::sniff_format(bytes)
        .ok_or_else(|| Error::UnsupportedFormat { format: None, detail: "not a JPEG, PNG, GIF or WebP file".into() })?;
    let (width, height) = header::dimensions(format, bytes)?;
    check_dimensions(width, height, limits)?;
    let orientation = orientation::orientation(format, bytes);
    Ok(ImageInfo { format, width, height, orientation })
}

/// Decodes an image to RGB8 as `load_image` does (PIL open, `exif_transpose`, `convert("RGB")`).
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
            decode_with(decoder, info, limits)?
        }
        ImageFormat::WebP => {
            let decoder = ::image::codecs::webp::WebPDecoder::new(cursor).map_err(fail)?;
            decode_with(decoder, info, limits)?
        }
        ImageFormat::Gif => gif::decode(bytes, limits)?,
    };
    Ok(apply_orientation(img, info.orientation))
}

/// Rejects sizes past the limits: total pixels first (the bomb guard), then each side.
fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<()> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Error::TooManyPixels { width, height, limit: limits.max_pixels });
    }
    if width.max(height) > limits.max_dimension {
        return Err(Error::DimensionTooLarge { width, height, limit: limits.max_dimension });
    }
    Ok(())
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

/// Runs one of the `image` crate's decoders and converts its output as PIL's `convert("RGB")` would.
fn decode_with(mut decoder: impl ImageDecoder, info: ImageInfo, limits: &DecodeLimits) -> Result<RgbImage> {
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
    let mut buf = vec![0_u8; decoder.total_bytes() as usize];
    decoder.read_image(&mut buf).map_err(|e| from_image_error(format, e))?;
    let data = to_rgb(&buf, color)
        .ok_or_else(|| Error::UnsupportedFormat { format: Some(format), detail: format!("pixel type {color:?}") })?;
    Ok(RgbImage { width, height, data })
}

/// PIL's `convert("RGB")` of the mode PIL would have opened the file in.
fn to_rgb(buf: &[u8], color: ColorType) -> Option<Vec<u8>> {
    // 16-bit samples arrive in native byte order; PIL's 16-bit unpackers (`RGB;16B`, `LA;16B`, ...)
    // keep the most significant byte.
    let hi = |s: &[u8]| (u16::from_ne_bytes([s[0], s[1]]) >> 8) as u8;
    let grey = |v: u8| [v, v, v];
    let out: Vec<u8> = match color {
        ColorType::Rgb8 => buf.to_vec(),
        ColorType::Rgba8 => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        ColorType::L8 => buf.iter().flat_map(|&v| grey(v)).collect(),
        ColorType::La8 => buf.chunks_exact(2).flat_map(|p| grey(p[0])).collect(),
        // PIL opens 16-bit grey PNG as `I;16` and its `I;16` -> `RGB` conversion clips to 255.
        ColorType::L16 => {
            buf.chunks_exact(2).flat_map(|s| grey(u16::from_ne_bytes([s[0], s[1]]).min(255) as u8)).collect()
        }
        ColorType::La16 => buf.chunks_exact(4).flat_map(|p| grey(hi(&p[0..2]))).collect(),
        ColorType::Rgb16 => buf.chunks_exact(2).map(hi).collect(),
        ColorType::Rgba16 => buf.chunks_exact(8).flat_map(|p| [hi(&p[0..2]), hi(&p[2..4]), hi(&p[4..6])]).collect(),
        _ => return None,
    };
    Some(out)
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

    #[test]
    fn rgb_conversion_follows_pil() {
        assert_eq!(to_rgb(&[1, 2, 3, 4], ColorType::Rgba8), Some(vec![1, 2, 3]));
        assert_eq!(to_rgb(&[9, 200], ColorType::La8), Some(vec![9, 9, 9]));
        let l16: Vec<u8> = [7_u16, 300].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(to_rgb(&l16, ColorType::L16), Some(vec![7, 7, 7, 255, 255, 255]));
        let rgb16: Vec<u8> = [0x12FF_u16, 0x3400, 0xFF01].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(to_rgb(&rgb16, ColorType::Rgb16), Some(vec![0x12, 0x34, 0xFF]));
        assert_eq!(to_rgb(&[0; 12], ColorType::Rgb32F), None);
    }

    #[test]
    fn buffer_length_is_checked() {
        assert!(RgbImage::new(2, 2, vec![0; 12]).is_ok());
        assert!(matches!(RgbImage::new(2, 2, vec![0; 11]), Err(Error::BufferSize { expected: 12, .. })));
        assert_eq!(RgbImage::filled(2, 1, [1, 2, 3]).pixel(1, 0), [1, 2, 3]);
    }
}
