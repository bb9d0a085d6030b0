//! EXIF orientation, found and applied as `PIL.ImageOps.exif_transpose` does, and the few descriptive EXIF
//! tags [`crate::metadata`] reports.
//!
//! Where PIL looks (Pillow 13.0.0, `Image.getexif`): the EXIF block's IFD0 tag 0x0112; when that tag is
//! absent, the first `tiff:Orientation="N"` / `tiff:Orientation>N` in the XMP packet. The EXIF block comes
//! from the JPEG APP1 `Exif` segment, the PNG `eXIf` chunk (anywhere in the file: PIL loads the whole
//! image before reading it), a PNG text chunk `Raw profile type exif` (ImageMagick's hex dump) or `exif`,
//! or the WebP `EXIF` chunk; XMP from the JPEG APP1 `http://ns.adobe.com/xap/1.0/` segment, the PNG
//! `XML:com.adobe.xmp` text chunk or the WebP `XMP ` chunk. GIF carries neither. Values outside 2..=8 mean
//! no transform. Unlike PIL, an unreadable EXIF block is ignored instead of failing the whole load.
//!
//! One IFD walker ([`read_exif`]) reads both the orientation and the descriptive tags: IFD0 (0x010F Make,
//! 0x0110 Model, 0x0112 Orientation, 0x0131 Software, 0x0132 DateTime) and the Exif sub-IFD it points to
//! with 0x8769 (0x9003 DateTimeOriginal, 0xA434 LensModel). Every read is bounds-checked and only those
//! two IFDs are visited, each once, so malformed EXIF yields `None` values, never a panic or a loop.

use serde::{Deserialize, Serialize};

use super::format::ImageFormat;
use super::header::{JpegSegments, be_u16, be_u32, le_u16, le_u32};
use super::types::RgbImage;

/// Descriptive EXIF tags, as text (NUL-terminated and space-padded values trimmed, at most 256 bytes,
/// invalid UTF-8 replaced). Dates are as EXIF writes them: `"YYYY:MM:DD HH:MM:SS"`, local time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExifFields {
    /// 0x9003 DateTimeOriginal (Exif IFD): when the photo was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time_original: Option<String>,
    /// 0x0132 DateTime (IFD0): when the file was last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_time: Option<String>,
    /// 0x010F Make (IFD0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    /// 0x0110 Model (IFD0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// 0x0131 Software (IFD0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software: Option<String>,
    /// 0xA434 LensModel (Exif IFD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lens_model: Option<String>,
}

impl ExifFields {
    /// Whether no tag is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The raw orientation value (1 when absent or unreadable) for an image of a known format.
pub(super) fn orientation(format: ImageFormat, bytes: &[u8]) -> u16 {
    read_tags(format, bytes).orientation.unwrap_or(1)
}

/// What the metadata blocks of a file say.
#[derive(Debug, Default)]
pub(crate) struct Tags {
    /// The raw orientation value, from EXIF or else XMP, as [`orientation`] finds it; `None` when absent.
    pub orientation: Option<u16>,
    /// The descriptive EXIF tags (all `None` without a readable EXIF block).
    pub exif: ExifFields,
}

/// The orientation and the descriptive EXIF tags of an image of a known format, from its headers.
pub(crate) fn read_tags(format: ImageFormat, bytes: &[u8]) -> Tags {
    let Metadata { exif, xmp } = match format {
        ImageFormat::Jpeg => jpeg_metadata(bytes),
        ImageFormat::Png => png_metadata(bytes),
        ImageFormat::WebP => webp_metadata(bytes),
        ImageFormat::Gif => return Tags::default(),
    };
    let exif = exif.as_deref().map(read_exif).unwrap_or_default();
    let orientation = exif.orientation.or_else(|| xmp.as_deref().and_then(xmp_orientation));
    Tags { orientation, exif: exif.fields }
}

/// The metadata blocks PIL would have in `info` after loading.
#[derive(Default)]
struct Metadata<'a> {
    exif: Option<std::borrow::Cow<'a, [u8]>>,
    xmp: Option<std::borrow::Cow<'a, [u8]>>,
}

fn jpeg_metadata(bytes: &[u8]) -> Metadata<'_> {
    const XMP: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
    let mut meta = Metadata::default();
    // PIL reads every marker up to the first scan; later Exif segments are appended to the first,
    // which leaves IFD0 where it was, so the first one is all that matters here.
    for (marker, data) in JpegSegments::new(bytes).map_while(|s| s.ok()) {
        if marker != 0xE1 {
            continue;
        }
        if data.starts_with(b"Exif\0\0") && meta.exif.is_none() {
            meta.exif = Some(data.into());
        } else if data.starts_with(XMP) {
            meta.xmp = Some(data[XMP.len()..].into());
        }
    }
    meta
}

/// Compressed text chunks larger than this are skipped rather than inflated.
const MAX_TEXT_CHUNK: usize = 4 << 20;

fn png_metadata(bytes: &[u8]) -> Metadata<'_> {
    let mut meta = Metadata::default();
    let mut raw_profile: Option<Vec<u8>> = None;
    let mut pos = 8;
    while let (Some(len), Some(kind)) = (be_u32(bytes, pos), bytes.get(pos + 4..pos + 8)) {
        let Some(data) = (pos + 8).checked_add(len as usize).and_then(|end| bytes.get(pos + 8..end)) else { break };
        pos += 12 + len as usize;
        match kind {
            b"eXIf" => meta.exif = Some(data.into()),
            b"tEXt" | b"zTXt" | b"iTXt" => {
                let Some((key, value)) = png_text(kind, data) else { continue };
                match key {
                    // tEXt "exif" goes to `info["exif"]` as raw bytes in PIL.
                    b"exif" if kind == b"tEXt" => meta.exif = Some(value),
                    b"Raw profile type exif" => raw_profile = Some(value.into_owned()),
                    b"XML:com.adobe.xmp" => meta.xmp = Some(value),
                    _ => {}
                }
            }
            b"IEND" => break,
            _ => {}
        }
    }
    if meta.exif.is_none() {
        // "\nexif\n   <len>\n<hex, wrapped>": PIL drops the first three lines and unhexes the rest.
        meta.exif = raw_profile.and_then(|text| {
            let hex: Vec<u8> = text.split(|&b| b == b'\n').skip(3).flatten().copied().collect();
            unhex(&hex).map(Into::into)
        });
    }
    meta
}

/// Splits a PNG text chunk into keyword and (inflated) value.
fn png_text<'a>(kind: &[u8], data: &'a [u8]) -> Option<(&'a [u8], std::borrow::Cow<'a, [u8]>)> {
    let nul = data.iter().position(|&b| b == 0)?;
    let (key, rest) = (&data[..nul], &data[nul + 1..]);
    let inflate = |z: &[u8]| miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(z, MAX_TEXT_CHUNK).ok();
    match kind {
        b"tEXt" => Some((key, rest.into())),
        // Compression method byte (0 = zlib), then the stream.
        b"zTXt" => Some((key, inflate(rest.get(1..)?)?.into())),
        _ => {
            // Compression flag, method, language tag NUL, translated keyword NUL, text.
            let (&flag, rest) = rest.split_first()?;
            let (&method, rest) = rest.split_first()?;
            let mut parts = rest.splitn(3, |&b| b == 0);
            let (_lang, _translated, text) = (parts.next()?, parts.next()?, parts.next()?);
            match (flag, method) {
                (0, _) => Some((key, text.into())),
                (_, 0) => Some((key, inflate(text)?.into())),
                _ => None,
            }
        }
    }
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let digits: Vec<u8> = hex.iter().filter(|c| !c.is_ascii_whitespace()).copied().collect();
    digits.chunks(2).map(|p| Some(digit(*p.first()?)? << 4 | digit(*p.get(1)?)?)).collect()
}

fn webp_metadata(bytes: &[u8]) -> Metadata<'_> {
    let mut meta = Metadata::default();
    let mut pos = 12;
    while let (Some(kind), Some(len)) = (bytes.get(pos..pos + 4), le_u32(bytes, pos + 4)) {
        let Some(data) = (pos + 8).checked_add(len as usize).and_then(|end| bytes.get(pos + 8..end)) else { break };
        pos += 8 + len as usize + (len as usize & 1); // chunks are padded to even sizes
        match kind {
            b"EXIF" => meta.exif = Some(data.into()),
            b"XMP " => meta.xmp = Some(data.into()),
            _ => {}
        }
    }
    meta
}

/// A TIFF-structured EXIF block: its byte order and bounds-checked reads at offsets from the TIFF header.
struct Tiff<'a> {
    data: &'a [u8],
    big_endian: bool,
}

/// One 12-byte IFD entry; `value` is the offset of its value field (the value itself when it fits in
/// four bytes, else the offset of the value).
struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    value: usize,
}

impl<'a> Tiff<'a> {
    /// The block, optionally prefixed with `Exif\0\0` (any number of times), or `None` without a TIFF header.
    fn new(mut exif: &'a [u8]) -> Option<Self> {
        while let Some(rest) = exif.strip_prefix(b"Exif\0\0") {
            exif = rest;
        }
        let big_endian = match exif.get(..4)? {
            b"II\x2A\x00" => false,
            b"MM\x00\x2A" => true,
            _ => return None,
        };
        Some(Self { data: exif, big_endian })
    }

    fn bytes(&self, at: usize, len: usize) -> Option<&'a [u8]> {
        self.data.get(at..at.checked_add(len)?)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.bytes(at, 2)?;
        Some(if self.big_endian { be_u16(b, 0)? } else { le_u16(b, 0)? })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.bytes(at, 4)?;
        Some(if self.big_endian { be_u32(b, 0)? } else { le_u32(b, 0)? })
    }

    /// Calls `visit` for each entry of the IFD at `offset`; `false` when the IFD is cut off (the entries
    /// before the cut are still visited).
    fn walk(&self, offset: usize, mut visit: impl FnMut(Entry)) -> bool {
        let Some(count) = self.u16(offset) else { return false };
        for i in 0..usize::from(count) {
            let at = offset.saturating_add(2 + 12 * i);
            let (Some(tag), Some(kind), Some(count)) = (self.u16(at), self.u16(at + 2), self.u32(at + 4)) else {
                return false;
            };
            if self.bytes(at + 8, 4).is_none() {
                return false;
            }
            visit(Entry { tag, kind, count, value: at + 8 });
        }
        true
    }

    /// A single integer value of any integer type, as PIL reads it; `None` for tuples and other types.
    fn integer(&self, entry: &Entry) -> Option<u32> {
        if entry.count != 1 {
            return None; // a tuple in PIL
        }
        match entry.kind {
            1 | 6 => self.data.get(entry.value).map(|&b| u32::from(b)),
            3 | 8 => self.u16(entry.value).map(u32::from),
            4 | 9 => self.u32(entry.value),
            _ => None,
        }
    }

    /// A text value (ASCII, or BYTE / UNDEFINED / UTF-8 holding text): inline when it fits in four bytes,
    /// else at its offset; cut at the first NUL, trailing spaces trimmed, at most [`MAX_TEXT`] bytes, invalid
    /// UTF-8 replaced. `None` when empty or out of bounds.
    fn text(&self, entry: &Entry) -> Option<String> {
        if !matches!(entry.kind, 1 | 2 | 7 | 129) {
            return None;
        }
        let len = entry.count as usize;
        let at = if len <= 4 { entry.value } else { self.u32(entry.value)? as usize };
        let raw = self.bytes(at, len)?;
        let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
        let raw = &raw[..raw.len().min(MAX_TEXT)];
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches([' ', '\0']);
        (!text.is_empty()).then(|| text.to_owned())
    }
}

/// The longest text value kept, in bytes (longer ones are cut).
const MAX_TEXT: usize = 256;

/// What one EXIF block holds.
#[derive(Debug, Default)]
struct ExifTags {
    orientation: Option<u16>,
    fields: ExifFields,
}

/// Walks IFD0 and the Exif sub-IFD of a TIFF-structured EXIF block (optionally prefixed with
/// `Exif\0\0`). The orientation is read with whatever integer type the file gives it, as PIL's
/// `ImageFileDirectory_v2` does; the last of repeated tags wins, as in PIL's tag dictionary.
fn read_exif(exif: &[u8]) -> ExifTags {
    let mut tags = ExifTags::default();
    let Some(tiff) = Tiff::new(exif) else { return tags };
    let Some(ifd0) = tiff.u32(4).map(|o| o as usize) else { return tags };
    let (mut orientation, mut exif_ifd) = (None, None);
    let fields = &mut tags.fields;
    let complete = tiff.walk(ifd0, |entry| match entry.tag {
        0x0112 => orientation = tiff.integer(&entry),
        0x010F => fields.make = tiff.text(&entry),
        0x0110 => fields.model = tiff.text(&entry),
        0x0131 => fields.software = tiff.text(&entry),
        0x0132 => fields.date_time = tiff.text(&entry),
        // LONG or IFD, one value.
        0x8769 if entry.count == 1 && matches!(entry.kind, 4 | 13) => exif_ifd = tiff.u32(entry.value),
        _ => {}
    });
    // An IFD0 cut off part-way gives no orientation (PIL would keep the tags read before the cut).
    tags.orientation = orientation.filter(|_| complete).and_then(|v| u16::try_from(v).ok());
    // The cycle guard: an Exif pointer back to IFD0 is not followed, and nothing in the Exif IFD is.
    if let Some(offset) = exif_ifd.map(|o| o as usize).filter(|&o| o != ifd0) {
        let fields = &mut tags.fields;
        tiff.walk(offset, |entry| match entry.tag {
            0x9003 => fields.date_time_original = tiff.text(&entry),
            0xA434 => fields.lens_model = tiff.text(&entry),
            _ => {}
        });
    }
    tags
}

/// The first `tiff:Orientation="N"` or `tiff:Orientation>N` (one digit), as PIL's regular expression.
fn xmp_orientation(xmp: &[u8]) -> Option<u16> {
    const KEY: &[u8] = b"tiff:Orientation";
    let mut rest = xmp;
    while let Some(i) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[i + KEY.len()..];
        let digit = match rest {
            [b'=', b'"', d, ..] | [b'>', d, ..] => *d,
            _ => continue,
        };
        if digit.is_ascii_digit() {
            return Some(u16::from(digit - b'0'));
        }
    }
    None
}

/// Applies an EXIF orientation as `exif_transpose` does (2: mirror, 3: rotate 180, 4: flip, 5: transpose,
/// 6: rotate 90 clockwise, 7: transverse, 8: rotate 90 counter-clockwise); other values return the
/// image unchanged.
pub fn apply_orientation(img: RgbImage, orientation: u16) -> RgbImage {
    let (w, h) = (img.width as usize, img.height as usize);
    // Source pixel for output (x, y), given the input's width and height; `swap` when the output is h x w.
    type Source = fn(usize, usize, usize, usize) -> (usize, usize);
    let (swap, source): (bool, Source) = match orientation {
        2 => (false, |x, y, w, _| (w - 1 - x, y)),         // FLIP_LEFT_RIGHT
        3 => (false, |x, y, w, h| (w - 1 - x, h - 1 - y)), // ROTATE_180
        4 => (false, |x, y, _, h| (x, h - 1 - y)),         // FLIP_TOP_BOTTOM
        5 => (true, |x, y, _, _| (y, x)),                  // TRANSPOSE
        6 => (true, |x, y, _, h| (y, h - 1 - x)),          // ROTATE_270 (counter-clockwise)
        7 => (true, |x, y, w, h| (w - 1 - y, h - 1 - x)),  // TRANSVERSE
        8 => (true, |x, y, w, _| (w - 1 - y, x)),          // ROTATE_90 (counter-clockwise)
        _ => return img,
    };
    let (out_w, out_h) = if swap { (h, w) } else { (w, h) };
    let mut data = Vec::with_capacity(img.data.len());
    for y in 0..out_h {
        for x in 0..out_w {
            let (sx, sy) = source(x, y, w, h);
            let i = (sy * w + sx) * 3;
            data.extend_from_slice(&img.data[i..i + 3]);
        }
    }
    RgbImage { width: out_w as u32, height: out_h as u32, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn exif_orientation(exif: &[u8]) -> Option<u16> {
        read_exif(exif).orientation
    }

    fn tiff_ifd0(big_endian: bool, entries: &[(u16, u16, u32, u32)]) -> Vec<u8> {
        let mut v = Vec::new();
        let p16 = |v: &mut Vec<u8>, x: u16| v.extend(if big_endian { x.to_be_bytes() } else { x.to_le_bytes() });
        let p32 = |v: &mut Vec<u8>, x: u32| v.extend(if big_endian { x.to_be_bytes() } else { x.to_le_bytes() });
        v.extend(if big_endian { b"MM\x00\x2A" } else { b"II\x2A\x00" });
        p32(&mut v, 8);
        p16(&mut v, entries.len() as u16);
        for &(tag, kind, n, value) in entries {
            p16(&mut v, tag);
            p16(&mut v, kind);
            p32(&mut v, n);
            if kind == 3 {
                p16(&mut v, value as u16);
                p16(&mut v, 0);
            } else {
                p32(&mut v, value);
            }
        }
        p32(&mut v, 0);
        v
    }

    #[test]
    fn exif_orientation_both_endians_and_types() {
        for be in [false, true] {
            let t = tiff_ifd0(be, &[(0x010F, 2, 4, 0), (0x0112, 3, 1, 6)]);
            assert_eq!(exif_orientation(&t), Some(6));
            let mut prefixed = b"Exif\0\0".to_vec();
            prefixed.extend(&t);
            assert_eq!(exif_orientation(&prefixed), Some(6));
            assert_eq!(exif_orientation(&tiff_ifd0(be, &[(0x0112, 4, 1, 8)])), Some(8));
            assert_eq!(exif_orientation(&tiff_ifd0(be, &[(0x0112, 3, 2, 8)])), None);
            assert_eq!(exif_orientation(&tiff_ifd0(be, &[(0x0110, 3, 1, 8)])), None);
        }
        assert_eq!(exif_orientation(b"II*\0\xFF\xFF\xFF\xFF"), None);
        assert_eq!(exif_orientation(b"garbage"), None);
    }

    #[test]
    fn xmp_orientation_forms() {
        assert_eq!(xmp_orientation(br#"<x tiff:Orientation="6"/>"#), Some(6));
        assert_eq!(xmp_orientation(b"<tiff:Orientation>3</tiff:Orientation>"), Some(3));
        assert_eq!(xmp_orientation(br#"tiff:OrientationX tiff:Orientation="x" tiff:Orientation="8""#), Some(8));
        assert_eq!(xmp_orientation(b"no orientation"), None);
    }

    #[test]
    fn transposes_match_pil_definitions() {
        // 3 wide, 2 high; pixel value = 10 * y + x in every channel.
        let img = RgbImage { width: 3, height: 2, data: [0, 1, 2, 10, 11, 12].iter().flat_map(|&v| [v; 3]).collect() };
        let grid = |o: u16| {
            let out = apply_orientation(img.clone(), o);
            let rows: Vec<Vec<u8>> =
                out.data.chunks(3 * out.width as usize).map(|r| r.iter().step_by(3).copied().collect()).collect();
            rows
        };
        assert_eq!(grid(1), vec![vec![0, 1, 2], vec![10, 11, 12]]);
        assert_eq!(grid(2), vec![vec![2, 1, 0], vec![12, 11, 10]]);
        assert_eq!(grid(3), vec![vec![12, 11, 10], vec![2, 1, 0]]);
        assert_eq!(grid(4), vec![vec![10, 11, 12], vec![0, 1, 2]]);
        assert_eq!(grid(5), vec![vec![0, 10], vec![1, 11], vec![2, 12]]);
        assert_eq!(grid(6), vec![vec![10, 0], vec![11, 1], vec![12, 2]]); // clockwise
        assert_eq!(grid(7), vec![vec![12, 2], vec![11, 1], vec![10, 0]]);
        assert_eq!(grid(8), vec![vec![2, 12], vec![1, 11], vec![0, 10]]); // counter-clockwise
        assert_eq!(grid(9), grid(1));
    }
}
