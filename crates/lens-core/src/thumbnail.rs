//! Thumbnails: an image fitted in `size` x `size` (aspect kept, never enlarged), shrunk with the
//! antialiasing bicubic resample of [`crate::resample`] and encoded as JPEG at quality 80. The server's
//! thumbnail route, the browser's local grid and the sync mirror all make them here, so a thumbnail
//! pulled from the server and one made locally from the same bytes are the same picture.

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;

use crate::image::RgbImage;
use crate::resample::{Filter, resize};
use crate::{Error, Result};

/// Smallest and largest `size` the API serves, and its default.
pub const MIN_SIZE: u32 = 32;
pub const MAX_SIZE: u32 = 512;
pub const DEFAULT_SIZE: u32 = 256;
/// Every `size` the API serves (each rendering is cached: a few sizes bound what one image can cost).
pub const SIZES: [u32; 5] = [32, 64, 128, 256, 512];
/// JPEG quality of thumbnails.
pub const QUALITY: u8 = 80;

/// `width` x `height` scaled to fit `size` x `size` (aspect kept, each side at least 1, rounded to
/// the nearest pixel), or unchanged when it fits already.
pub fn fit(width: u32, height: u32, size: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= size {
        return (width, height);
    }
    let scale = |side: u32| ((u64::from(side) * u64::from(size) + u64::from(long) / 2) / u64::from(long)).max(1) as u32;
    (scale(width), scale(height))
}

/// The JPEG thumbnail of `image` fitted in `size` x `size`.
///
/// # Errors
/// [`Error::Encode`] when the JPEG encoder fails (an empty image).
pub fn render(image: &RgbImage, size: u32) -> Result<Vec<u8>> {
    let (width, height) = fit(image.width, image.height, size);
    let small = if (width, height) == (image.width, image.height) {
        None
    } else {
        Some(resize(image, width, height, Filter::Bicubic))
    };
    let small = small.as_ref().unwrap_or(image);
    let mut out = Vec::with_capacity(16 << 10);
    JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode(&small.data, small.width, small.height, ExtendedColorType::Rgb8)
        .map_err(|e| Error::Encode { detail: format!("thumbnail JPEG: {e}") })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::image::{DecodeLimits, decode_image};

    #[test]
    fn fit_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fit(512, 256, 256), (256, 128));
        assert_eq!(fit(300, 1200, 100), (25, 100));
        assert_eq!(fit(10_000, 1, 64), (64, 1));
        assert_eq!(fit(40, 30, 256), (40, 30));
        assert_eq!(fit(257, 257, 256), (256, 256));
        assert_eq!(fit(400, 600, 256), (171, 256));
    }

    #[test]
    fn a_thumbnail_is_a_jpeg_of_the_fitted_size_and_colour() {
        let img = RgbImage::filled(300, 150, [200, 10, 10]);
        let jpeg = render(&img, 64).unwrap();
        let back = decode_image(&jpeg, &DecodeLimits::default()).unwrap();
        assert_eq!((back.width, back.height), (64, 32));
        let [r, g, b] = back.pixel(10, 10);
        assert!(r > 180 && g < 40 && b < 40, "colour kept: {r} {g} {b}");
    }
}
