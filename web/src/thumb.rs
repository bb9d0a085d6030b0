//! What the worker does with a file before embedding it: content hash, decode (lens-core, the same
//! code as the server), and a small JPEG thumbnail for the grid.

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;
use lens_core::image::{DecodeLimits, ImageFormat, RgbImage, decode_image};
use lens_core::resample::{Filter, resize};
use sha2::{Digest, Sha256};

/// Longest side of a thumbnail, in pixels (a grid cell is at most ~220 CSS px, 2x for HiDPI would be
/// more than the local index needs to keep).
pub const THUMB_SIDE: u32 = 256;

/// Hex SHA-256 of the file's bytes: the image's key here and on the server.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A decoded file: its format and upright RGB pixels.
#[derive(Debug)]
pub struct Decoded {
    pub format: ImageFormat,
    pub image: RgbImage,
}

/// Refuses a file larger than decoding accepts before its bytes are read into memory (a dropped
/// video would otherwise be copied whole into the worker just to be refused by [`decode`]).
pub fn check_file_size(bytes: f64) -> Result<(), String> {
    let limit = DecodeLimits::default().max_bytes;
    if bytes > limit as f64 {
        return Err(lens_core::Error::TooLarge { bytes: bytes as usize, limit }.to_string());
    }
    Ok(())
}

/// Decodes a JPEG, PNG, GIF or WebP file with lens-core (EXIF orientation applied).
///
/// # Errors
/// A one-line reason the user can read: unsupported format, corrupt data, too large.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let format = ImageFormat::from_signature(bytes)
        .ok_or_else(|| "unsupported file: not a JPEG, PNG, GIF or WebP image".to_string())?;
    let image = decode_image(bytes, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    Ok(Decoded { format, image })
}

/// The thumbnail's size: `image` scaled so its longer side is at most `side` (never enlarged).
pub fn thumbnail_size(width: u32, height: u32, side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= side {
        return (width.max(1), height.max(1));
    }
    let scale = f64::from(side) / f64::from(longest);
    let w = ((f64::from(width) * scale).round() as u32).clamp(1, side);
    let h = ((f64::from(height) * scale).round() as u32).clamp(1, side);
    (w, h)
}

/// A JPEG (quality 80) of `image` scaled to fit `side`×`side`.
pub fn thumbnail_jpeg(image: &RgbImage, side: u32) -> Result<Vec<u8>, String> {
    let (w, h) = thumbnail_size(image.width, image.height, side);
    let small =
        if (w, h) == (image.width, image.height) { image.clone() } else { resize(image, w, h, Filter::Bilinear) };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 80)
        .encode(&small.data, w, h, ExtendedColorType::Rgb8)
        .map_err(|e| format!("thumbnail: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_decode_limit_are_refused_unread() {
        let limit = DecodeLimits::default().max_bytes as f64;
        assert_eq!(check_file_size(limit), Ok(()));
        let err = check_file_size(limit + 1.0).unwrap_err();
        // The same words decoding the bytes would give.
        let mut big = vec![0u8; limit as usize + 1];
        big[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
        assert_eq!(err, decode(&big).unwrap_err());
    }

    #[test]
    fn thumbnails_keep_the_aspect_ratio_and_never_grow() {
        assert_eq!(thumbnail_size(512, 512, 256), (256, 256));
        assert_eq!(thumbnail_size(400, 600, 256), (171, 256));
        assert_eq!(thumbnail_size(1000, 3, 256), (256, 1));
        assert_eq!(thumbnail_size(100, 50, 256), (100, 50));
    }

    #[test]
    fn a_thumbnail_is_a_jpeg_of_the_right_size() {
        let img = RgbImage::filled(300, 150, [200, 10, 10]);
        let jpeg = thumbnail_jpeg(&img, 64).unwrap();
        let back = decode(&jpeg).unwrap();
        assert_eq!(back.format, ImageFormat::Jpeg);
        assert_eq!((back.image.width, back.image.height), (64, 32));
        let [r, g, b] = back.image.pixel(10, 10);
        assert!(r > 180 && g < 40 && b < 40, "colour kept: {r} {g} {b}");
    }

    #[test]
    fn unsupported_files_say_so() {
        let err = decode(b"hello, not an image").unwrap_err();
        assert!(err.contains("unsupported"), "{err}");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
