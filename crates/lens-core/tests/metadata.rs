//! Header metadata: the EXIF tags of a hand-built APP1 segment in both byte orders, the fixtures, and
//! malformed EXIF (offsets past the end, IFD cycles, random mutations) that must never panic.

use crate::common::fixture_image;
use lens_core::image::DecodeLimits;
use lens_core::metadata::{ExifFields, ImageMetadata, image_metadata};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const ASCII: u16 = 2;
const SHORT: u16 = 3;
const LONG: u16 = 4;

/// One IFD entry: tag, type, count, and the value's bytes (inline when four or fewer, else placed after
/// the IFDs and pointed to). `Offset(n)` writes `n` as the value field whatever its type.
enum Value {
    Bytes(Vec<u8>),
    Offset(u32),
}

struct Tiff {
    big_endian: bool,
}

impl Tiff {
    fn u16(&self, v: u16) -> Vec<u8> {
        if self.big_endian { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() }
    }

    fn u32(&self, v: u32) -> Vec<u8> {
        if self.big_endian { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() }
    }

    /// A TIFF block: header, IFD0 at 8, the Exif IFD right after it (`None`: no Exif IFD and no pointer),
    /// then the out-of-line values. IFD0's 0x8769 pointer is added last, pointing at the Exif IFD.
    fn build(&self, ifd0: Vec<(u16, u16, u32, Value)>, exif: Option<Vec<(u16, u16, u32, Value)>>) -> Vec<u8> {
        let ifd_len = |n: usize| 2 + 12 * n + 4;
        let n0 = ifd0.len() + usize::from(exif.is_some());
        let exif_at = 8 + ifd_len(n0);
        let data_at = exif_at + exif.as_ref().map_or(0, |e| ifd_len(e.len()));
        let (mut out, mut data) = (Vec::new(), Vec::<u8>::new());
        out.extend(if self.big_endian { b"MM\x00\x2A" } else { b"II\x2A\x00" });
        out.extend(self.u32(8));
        let mut write_ifd = |out: &mut Vec<u8>, entries: &[(u16, u16, u32, Value)]| {
            out.extend(self.u16(entries.len() as u16));
            for (tag, kind, count, value) in entries {
                out.extend(self.u16(*tag));
                out.extend(self.u16(*kind));
                out.extend(self.u32(*count));
                match value {
                    Value::Bytes(b) if b.len() <= 4 => out.extend(b.iter().copied().chain([0; 4]).take(4)),
                    Value::Bytes(b) => {
                        out.extend(self.u32((data_at + data.len()) as u32));
                        data.extend(b);
                    }
                    Value::Offset(o) => out.extend(self.u32(*o)),
                }
            }
            out.extend(self.u32(0)); // no next IFD
        };
        let mut ifd0 = ifd0;
        if exif.is_some() {
            ifd0.push((0x8769, LONG, 1, Value::Offset(exif_at as u32)));
        }
        write_ifd(&mut out, &ifd0);
        if let Some(exif) = &exif {
            write_ifd(&mut out, exif);
        }
        out.extend(data);
        out
    }

    fn short(&self, v: u16) -> Value {
        Value::Bytes(self.u16(v))
    }
}

fn ascii(s: &[u8]) -> (u32, Value) {
    (s.len() as u32, Value::Bytes(s.to_vec()))
}

/// coffee.jpg (600x400) with an APP1 `Exif\0\0` segment holding `tiff` inserted right after SOI.
fn jpeg_with_exif(tiff: &[u8]) -> Vec<u8> {
    let jpeg = fixture_image("coffee.jpg");
    let mut out = jpeg[..2].to_vec();
    out.extend([0xFF, 0xE1]);
    out.extend(((tiff.len() + 8) as u16).to_be_bytes());
    out.extend(b"Exif\0\0");
    out.extend(tiff);
    out.extend(&jpeg[2..]);
    out
}

/// The full test block: Make and Model out of line, Software inline (four bytes, no NUL), DateTime,
/// Orientation 6, and an Exif IFD with DateTimeOriginal and a space-padded LensModel.
fn camera_tiff(big_endian: bool) -> Vec<u8> {
    let t = Tiff { big_endian };
    let entry = |tag, (count, value)| (tag, ASCII, count, value);
    t.build(
        vec![
            entry(0x010F, ascii(b"Canon\0")),
            entry(0x0110, ascii(b"EOS 5D Mark IV\0")),
            (0x0112, SHORT, 1, t.short(6)),
            entry(0x0131, ascii(b"GIMP")),
            entry(0x0132, ascii(b"2024:07:15 09:30:00\0")),
        ],
        Some(vec![
            entry(0x9003, ascii(b"2024:07:14 18:03:22\0")),
            entry(0xA434, ascii(b"EF24-70mm f/2.8L II USM  \0\0")),
        ]),
    )
}

fn metadata(bytes: &[u8]) -> ImageMetadata {
    image_metadata(bytes, &DecodeLimits::default()).unwrap()
}

#[test]
fn hand_built_exif_in_both_byte_orders() {
    for big_endian in [false, true] {
        let meta = metadata(&jpeg_with_exif(&camera_tiff(big_endian)));
        let expected = ImageMetadata {
            format: "jpeg".into(),
            mime: "image/jpeg".into(),
            width: 400, // 600x400 stored, rotated by orientation 6
            height: 600,
            orientation: Some(6),
            exif: Some(ExifFields {
                date_time_original: Some("2024:07:14 18:03:22".into()),
                date_time: Some("2024:07:15 09:30:00".into()),
                make: Some("Canon".into()),
                model: Some("EOS 5D Mark IV".into()),
                software: Some("GIMP".into()),
                lens_model: Some("EF24-70mm f/2.8L II USM".into()),
            }),
        };
        assert_eq!(meta, expected, "big endian: {big_endian}");
    }
}

#[test]
fn json_leaves_out_what_is_missing() {
    let t = Tiff { big_endian: true };
    let tiff = t.build(vec![(0x010F, ASCII, 6, Value::Bytes(b"Canon\0".to_vec()))], None);
    let json = serde_json::to_value(metadata(&jpeg_with_exif(&tiff))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"format": "jpeg", "mime": "image/jpeg", "width": 600, "height": 400, "exif": {"make": "Canon"}})
    );
    let back: ImageMetadata = serde_json::from_value(json).unwrap();
    assert_eq!(back.exif.unwrap().make.as_deref(), Some("Canon"));
}

#[test]
fn fixtures() {
    // rocket_exif6.jpg's EXIF block holds only the orientation: `exif` is None (not Some of all None).
    let rocket = metadata(fixture_image("rocket_exif6.jpg"));
    assert_eq!((rocket.width, rocket.height, rocket.orientation, rocket.exif), (427, 640, Some(6), None));
    let coffee3 = metadata(fixture_image("coffee_exif3.jpg"));
    assert_eq!((coffee3.width, coffee3.height, coffee3.orientation), (300, 200, Some(3)));
    let plain = metadata(fixture_image("coffee.jpg"));
    assert_eq!((plain.width, plain.height, plain.orientation, plain.exif), (600, 400, None, None));
    for (file, format, mime, size) in [
        ("astronaut.png", "png", "image/png", (512, 512)),
        ("chelsea_rgba.png", "png", "image/png", (451, 300)),
        ("coffee_palette.gif", "gif", "image/gif", (300, 200)),
        ("coffee_lossy.webp", "webp", "image/webp", (300, 200)),
    ] {
        let meta = metadata(fixture_image(file));
        assert_eq!((meta.format.as_str(), meta.mime.as_str()), (format, mime), "{file}");
        assert_eq!((meta.width, meta.height, meta.orientation, meta.exif), (size.0, size.1, None, None), "{file}");
    }
    assert!(image_metadata(fixture_image("not_an_image.jpg"), &DecodeLimits::default()).is_err());
}

#[test]
fn strings_inline_capped_and_lossy() {
    let t = Tiff { big_endian: false };
    let long = vec![b'x'; 1000];
    let tiff = t.build(
        vec![
            (0x010F, ASCII, 3, Value::Bytes(b"Ab\0".to_vec())), // inline, shorter than four bytes
            (0x0110, ASCII, 4, Value::Bytes(b"\xFFZ \0".to_vec())), // invalid UTF-8, padded
            (0x0131, ASCII, 1000, Value::Bytes(long)),
            (0x0132, ASCII, 4, Value::Bytes(b"\0\0\0\0".to_vec())), // empty: None
        ],
        None,
    );
    let exif = metadata(&jpeg_with_exif(&tiff)).exif.unwrap();
    assert_eq!(exif.make.as_deref(), Some("Ab"));
    assert_eq!(exif.model.as_deref(), Some("\u{FFFD}Z"));
    assert_eq!(exif.software.as_deref(), Some("x".repeat(256).as_str()));
    assert_eq!(exif.date_time, None);
}

#[test]
fn malformed_exif_gives_none_not_panics() {
    for big_endian in [false, true] {
        let t = Tiff { big_endian };
        // Values past the end, a huge count, a non-text type: those fields are None, the rest are read.
        let tiff = t.build(
            vec![
                (0x010F, ASCII, 20, Value::Offset(0xFFFF_FF00)),
                (0x0110, ASCII, u32::MAX, Value::Offset(8)),
                (0x0131, SHORT, 1, t.short(7)),
                (0x0132, ASCII, 20, Value::Bytes(b"2020:01:01 00:00:00\0".to_vec())),
            ],
            None,
        );
        let meta = metadata(&jpeg_with_exif(&tiff));
        let exif = meta.exif.unwrap();
        assert_eq!((exif.make, exif.model, exif.software), (None, None, None));
        assert_eq!(exif.date_time.as_deref(), Some("2020:01:01 00:00:00"));

        // The Exif pointer back at IFD0, and past the end.
        for pointer in [8, 0xFFFF_FFF0] {
            let mut tiff = t.build(vec![(0x010F, ASCII, 6, Value::Bytes(b"Canon\0".to_vec()))], Some(vec![]));
            // IFD0's second entry is the pointer; its value field is at 8 + 2 + 12 + 8.
            tiff[30..34].copy_from_slice(&t.u32(pointer));
            let exif = metadata(&jpeg_with_exif(&tiff)).exif.unwrap();
            assert_eq!((exif.make.as_deref(), exif.date_time_original), (Some("Canon"), None));
        }

        // An Exif IFD whose own 0x8769 points at itself (never followed), with DateTimeOriginal read once.
        let exif_at = 8 + 2 + 12 + 4;
        let tiff = t.build(
            vec![],
            Some(vec![
                (0x8769, LONG, 1, Value::Offset(exif_at)),
                (0x9003, ASCII, 20, Value::Bytes(b"2024:07:14 18:03:22\0".to_vec())),
            ]),
        );
        let exif = metadata(&jpeg_with_exif(&tiff)).exif.unwrap();
        assert_eq!(exif.date_time_original.as_deref(), Some("2024:07:14 18:03:22"));

        // IFD0 past the end, or claiming 65535 entries: no EXIF, no orientation.
        let mut tiff = camera_tiff(big_endian);
        tiff[4..8].copy_from_slice(&t.u32(0x7FFF_FFFF));
        let meta = metadata(&jpeg_with_exif(&tiff));
        assert_eq!((meta.orientation, meta.exif, meta.width), (None, None, 600));
        let mut tiff = camera_tiff(big_endian);
        tiff[8..10].copy_from_slice(&t.u16(0xFFFF));
        let meta = metadata(&jpeg_with_exif(&tiff));
        assert_eq!((meta.orientation, meta.width), (None, 600)); // a cut-off IFD0 gives no orientation

        // Cut short anywhere: never a panic.
        let full = camera_tiff(big_endian);
        for len in 0..full.len() {
            let _ = metadata(&jpeg_with_exif(&full[..len]));
        }
    }
}

/// xorshift64*, so the mutations are the same on every run without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_exif_never_panics() {
    let mut rng = Rng(0x5EED_E11F);
    let originals = [camera_tiff(false), camera_tiff(true)];
    let mut read = 0;
    for i in 0..2000 {
        let mut tiff = originals[i % 2].clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(tiff.len());
            tiff[at] = match rng.below(4) {
                0 => 0,
                1 => 0xFF,
                _ => rng.next() as u8,
            };
        }
        // Sometimes truncate as well.
        if rng.below(4) == 0 {
            tiff.truncate(rng.below(tiff.len()));
        }
        if let Ok(meta) = image_metadata(&jpeg_with_exif(&tiff), &DecodeLimits::default()) {
            read += usize::from(meta.exif.is_some());
        }
    }
    assert!(read > 500, "only {read} of 2000 mutated blocks kept any tag");
}
