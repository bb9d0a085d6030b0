//! What the edge checks of an upload before the origin sees it: the origin's limits on files and pixels,
//! read from the headers alone (lens-core's `probe_image`: nothing is decoded), and each image's id.

use lens_core::api::RequestError;
use lens_core::ids::{hex_lower, public_id};
use lens_core::image::{DecodeLimits, probe_image};
use sha2::{Digest, Sha256};

/// The upload limits (the server's defaults, `lens serve`'s `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UploadLimits {
    pub max_body_bytes: usize,
    pub max_file_bytes: usize,
    pub max_pixels: u64,
    pub max_side: u32,
    pub max_files: usize,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 100 << 20,
            max_file_bytes: 20 << 20,
            max_pixels: 40_000_000,
            max_side: 12_000,
            max_files: 64,
        }
    }
}

/// An image that passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedImage {
    /// The public id (the first 128 bits of the SHA-256, in hex): the origin gives the same one.
    pub id: String,
    pub mime: &'static str,
    pub sha256_bytes: Vec<u8>,
}

/// Checks every file of a form; the first refusal refuses the request (nothing is forwarded or stored).
/// Files with the same bytes come back once.
pub fn check_files<'a>(
    files: &'a [Vec<u8>],
    limits: &UploadLimits,
) -> Result<Vec<(CheckedImage, &'a Vec<u8>)>, RequestError> {
    if files.is_empty() {
        return Err(RequestError::invalid("no `file` field in the form"));
    }
    if files.len() > limits.max_files {
        return Err(RequestError::too_large(format!("{} files, over the limit of {}", files.len(), limits.max_files)));
    }
    let decode = DecodeLimits {
        max_bytes: limits.max_file_bytes,
        max_pixels: limits.max_pixels,
        max_dimension: limits.max_side,
        allow_incomplete: false,
        max_gif_pixels: limits.max_pixels.min(DecodeLimits::default().max_gif_pixels),
    };
    let mut out: Vec<(CheckedImage, &Vec<u8>)> = Vec::with_capacity(files.len());
    for (n, bytes) in files.iter().enumerate() {
        let info = probe_image(bytes, &decode).map_err(|e| RequestError::new(e.code(), format!("file {n}: {e}")))?;
        let digest = Sha256::digest(bytes).to_vec();
        let id = public_id(&hex_lower(&digest)).to_string();
        if out.iter().all(|(c, _)| c.id != id) {
            out.push((CheckedImage { id, mime: info.format.mime_type(), sha256_bytes: digest }, bytes));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lens_core::api::ErrorCode;

    fn png(width: u32, height: u32) -> Vec<u8> {
        // A PNG signature and IHDR are all the header check reads.
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend(width.to_be_bytes());
        b.extend(height.to_be_bytes());
        b.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn images_get_the_origins_id_and_bad_files_the_servers_codes() {
        let l = UploadLimits::default();
        let files = vec![png(4, 3), png(4, 3), png(5, 5)];
        let checked = check_files(&files, &l).unwrap();
        assert_eq!(checked.len(), 2, "the same bytes once");
        assert_eq!(checked[0].0.id, lens_core::ids::sha256_hex(&files[0])[..32]);
        assert_eq!(checked[0].0.mime, "image/png");

        let code = |files: Vec<Vec<u8>>, l: &UploadLimits| check_files(&files, l).unwrap_err().code;
        assert_eq!(code(vec![b"hello".to_vec()], &l), ErrorCode::UnsupportedFormat);
        assert_eq!(code(vec![png(20_000, 20_000)], &l), ErrorCode::TooManyPixels);
        assert_eq!(code(vec![png(2, 2)], &UploadLimits { max_file_bytes: 10, ..l }), ErrorCode::TooLarge);
        assert_eq!(code(vec![png(2, 2); 3], &UploadLimits { max_files: 2, ..l }), ErrorCode::TooLarge);
        assert_eq!(code(vec![], &l), ErrorCode::InvalidRequest);
    }
}
