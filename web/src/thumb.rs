//! What the worker does with a file before embedding it: content hash, decode, and a small JPEG
//! thumbnail for the grid — all lens-core's, the same code as the server's, so an image added here and
//! the same bytes pulled from the server have one key and one thumbnail.

use lens_core::image::{DecodeLimits, ImageFormat, RgbImage, decode_image};

/// Hex SHA-256 of the file's bytes: the image's key here and on the server.
pub use lens_core::ids::sha256_hex;

/// Longest side of a thumbnail, in pixels: the size the sync feed's thumbnails are pulled at.
pub const THUMB_SIDE: u32 = lens_core::thumbnail::DEFAULT_SIZE;

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

/// A JPEG (quality 80) of `image` fitted in `side`×`side` (never enlarged).
pub fn thumbnail_jpeg(image: &RgbImage, side: u32) -> Result<Vec<u8>, String> {
    lens_core::thumbnail::render(image, side).map_err(|e| e.to_string())
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
