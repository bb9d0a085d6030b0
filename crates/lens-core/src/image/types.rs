//! What decoding takes and gives: the limits, the RGB8 image, the header's facts.

use std::fmt;

use super::format::ImageFormat;
use crate::{Error, Result};

/// Limits applied before and during decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted encoded input, in bytes.
    pub max_bytes: usize,
    /// Largest accepted `width * height` (the decompression-bomb guard).
    pub max_pixels: u64,
    /// Largest accepted width or height.
    pub max_dimension: u32,
    /// Accept a JPEG whose data stops (at a marker) before the image is complete, the rest grey, as libjpeg
    /// and Pillow do; `false`: refused as corrupt, so that a tiny file cannot stand for a huge image.
    pub allow_incomplete: bool,
    /// Largest accepted GIF canvas, `width * height`, lower than `max_pixels`: a GIF of 40 bytes can declare
    /// a 65535² screen, and GIFs, a format for small animations, are rarely past 4K (8.3 megapixels).
    pub max_gif_pixels: u64,
}

impl Default for DecodeLimits {
    /// 64 MiB, 64 megapixels (GIF: 16), 16384 pixels a side, incomplete images refused.
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_pixels: 64 << 20,
            max_dimension: 16384,
            allow_incomplete: false,
            max_gif_pixels: 16 << 20,
        }
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

/// Rejects sizes past the limits: total pixels first (the bomb guard), then each side.
pub(crate) fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<()> {
    check_pixels(width, height, limits.max_pixels)?;
    if width.max(height) > limits.max_dimension {
        return Err(Error::DimensionTooLarge { width, height, limit: limits.max_dimension });
    }
    Ok(())
}

/// [`check_dimensions`] for a GIF canvas, with its own pixel limit too.
pub(crate) fn check_gif_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<()> {
    check_pixels(width, height, limits.max_gif_pixels)?;
    check_dimensions(width, height, limits)
}

fn check_pixels(width: u32, height: u32, limit: u64) -> Result<()> {
    if u64::from(width) * u64::from(height) > limit {
        return Err(Error::TooManyPixels { width, height, limit });
    }
    Ok(())
}
