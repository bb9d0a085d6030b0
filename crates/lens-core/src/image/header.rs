//! Dimensions read straight from the header bytes, before any decoder runs.
//!
//! These few fixed-offset reads are what the decompression-bomb guard relies on: no decoder state,
//! no allocation, whatever the file claims.

use super::format::ImageFormat;
use crate::{Error, Result};

/// `(width, height)` as stored in the header (before any EXIF orientation).
pub(super) fn dimensions(format: ImageFormat, bytes: &[u8]) -> Result<(u32, u32)> {
    let corrupt = |detail: &str| Error::Corrupt { format, detail: detail.to_owned() };
    let (width, height) = match format {
        ImageFormat::Png => {
            // Signature, then IHDR must be the first chunk: length 13, "IHDR", width, height (big endian).
            if bytes.get(12..16) != Some(b"IHDR") {
                return Err(corrupt("IHDR is not the first chunk"));
            }
            let w = be_u32(bytes, 16).ok_or_else(|| corrupt("truncated IHDR"))?;
            let h = be_u32(bytes, 20).ok_or_else(|| corrupt("truncated IHDR"))?;
            (w, h)
        }
        ImageFormat::Gif => {
            // Logical screen descriptor. PIL grows the canvas when the first frame extends past it;
            // the GIF decoder checks that size again before allocating.
            let w = le_u16(bytes, 6).ok_or_else(|| corrupt("truncated screen descriptor"))?;
            let h = le_u16(bytes, 8).ok_or_else(|| corrupt("truncated screen descriptor"))?;
            (u32::from(w), u32::from(h))
        }
        ImageFormat::Jpeg => jpeg_dimensions(bytes).map_err(|detail| corrupt(detail))?,
        ImageFormat::WebP => webp_dimensions(bytes).map_err(|detail| corrupt(detail))?,
    };
    if width == 0 || height == 0 {
        return Err(corrupt("zero width or height"));
    }
    Ok((width, height))
}

/// Walks the JPEG markers up to the first frame header (SOFn).
fn jpeg_dimensions(bytes: &[u8]) -> std::result::Result<(u32, u32), &'static str> {
    let mut segments = JpegSegments::new(bytes);
    while let Some(segment) = segments.next() {
        let (marker, data) = segment?;
        match marker {
            // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC) which share the range.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let h = be_u16(data, 1).ok_or("truncated frame header")?;
                let w = be_u16(data, 3).ok_or("truncated frame header")?;
                return Ok((u32::from(w), u32::from(h)));
            }
            0xDA => return Err("scan before frame header"),
            _ => {}
        }
    }
    Err("no frame header")
}

/// Iterator over a JPEG's marker segments up to (and including) the first SOS, yielding the marker
/// byte and the segment payload (after the length field). Standalone markers yield an empty payload.
pub(super) struct JpegSegments<'a> {
    bytes: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> JpegSegments<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 2, done: false } // after SOI
    }
}

impl<'a> Iterator for JpegSegments<'a> {
    type Item = std::result::Result<(u8, &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let b = self.bytes;
        let step = || -> std::result::Result<(u8, &'a [u8], usize), &'static str> {
            let mut pos = self.pos;
            if b.get(pos) != Some(&0xFF) {
                return Err(if pos >= b.len() { "truncated before frame header" } else { "expected a marker" });
            }
            while b.get(pos) == Some(&0xFF) {
                pos += 1; // fill bytes
            }
            let marker = *b.get(pos).ok_or("truncated marker")?;
            pos += 1;
            if matches!(marker, 0x01 | 0xD0..=0xD8) {
                return Ok((marker, &[], pos));
            }
            let len = usize::from(be_u16(b, pos).ok_or("truncated segment")?);
            if len < 2 {
                return Err("bad segment length");
            }
            let data = b.get(pos + 2..pos + len).ok_or("truncated segment")?;
            Ok((marker, data, pos + len))
        };
        match step() {
            Ok((marker, data, next)) => {
                self.pos = next;
                self.done = matches!(marker, 0xDA | 0xD9);
                Some(Ok((marker, data)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads the first chunk of a WebP file: simple lossy (`VP8 `), lossless (`VP8L`) or extended (`VP8X`).
fn webp_dimensions(bytes: &[u8]) -> std::result::Result<(u32, u32), &'static str> {
    let data = bytes.get(20..).ok_or("truncated RIFF header")?;
    match bytes.get(12..16).ok_or("truncated RIFF header")? {
        b"VP8 " => {
            // 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height (2 bits of scale).
            if data.get(3..6) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err("bad VP8 start code");
            }
            let w = le_u16(data, 6).ok_or("truncated VP8 header")? & 0x3FFF;
            let h = le_u16(data, 8).ok_or("truncated VP8 header")? & 0x3FFF;
            Ok((u32::from(w), u32::from(h)))
        }
        b"VP8L" => {
            if data.first() != Some(&0x2F) {
                return Err("bad VP8L signature");
            }
            let bits = data.get(1..5).ok_or("truncated VP8L header")?;
            let bits = u32::from_le_bytes([bits[0], bits[1], bits[2], bits[3]]);
            Ok(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => {
            let le24 = |at: usize| data.get(at..at + 3).map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]));
            let w = le24(4).ok_or("truncated VP8X header")?;
            let h = le24(7).ok_or("truncated VP8X header")?;
            Ok((w + 1, h + 1))
        }
        _ => Err("unknown first chunk"),
    }
}

pub(super) fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

pub(super) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

pub(super) fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

pub(super) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn jpeg_frame_header_after_app_segments() {
        // SOI, APP0 (len 4: 2 payload bytes), fill byte, SOF0 8-bit 3x2.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x02, 0x00, 0x03,
            0x01, 0x01, 0x11, 0x00,
        ];
        assert_eq!(jpeg_dimensions(&jpeg), Ok((3, 2)));
        assert!(jpeg_dimensions(&jpeg[..12]).is_err());
        // A DHT (C4) is not a frame header.
        let dht = [0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x02, 0xFF, 0xDA, 0x00, 0x02];
        assert_eq!(jpeg_dimensions(&dht), Err("scan before frame header"));
    }
}
