//! Image decoding: encoded bytes in, RGB8 pixels out, as the Python reference's image processors see them.
//!
//! The reference is what transformers 5.23.0's `CLIPImageProcessor` / `BlipImageProcessor` (both backends)
//! do with a PIL image, `processor(images=PIL.Image.open(path))`, once it is upright: Pillow 13.0.0's
//! `Image.open`, `ImageOps.exif_transpose` (as `transformers.image_utils.load_image` does), then the
//! processor's own `do_convert_rgb` step, `transformers.image_transforms.convert_to_rgb` (lines 778-786),
//! which composites anything transparent onto white. [`decode_image`] reproduces it bit for bit:
//!
//! - formats are recognised by their signature, never by a file name: JPEG, PNG, GIF, WebP;
//! - the header's dimensions are checked against [`DecodeLimits`] before anything is decoded (a
//!   decompression bomb is rejected without allocating its pixels), and the decoders get the same limits;
//! - opaque images become RGB as PIL's `convert("RGB")` makes them: grey is replicated, palettes are
//!   expanded (indices past a short palette are black), 16-bit PNG samples keep their high byte, except
//!   16-bit greyscale, which PIL clips to 255 (its `I;16` -> `RGB`);
//! - images with transparency are composited onto opaque white with Pillow's integer `alpha_composite`
//!   (`src/image/alpha.rs` has the arithmetic and the source lines): RGBA and grey + alpha PNGs (16-bit ones
//!   by their high bytes), palette PNGs with per-entry tRNS alpha, grey and RGB PNGs with a tRNS colour
//!   key (matched as PIL matches it, on the 8-bit pixel against the key's low byte), GIFs with a transparent
//!   index, WebP with alpha. Alpha 255 leaves a pixel as it was, so opaque pixels are exactly what
//!   `convert("RGB")` gives; alpha 0 makes it white whatever colour it stored;
//! - the EXIF orientation (or, failing that, the XMP one) is applied as `exif_transpose` does.
//!
//! `load_image(path)` alone, which the transformers pipelines and `processor(images=path_string)` use, is
//! `convert("RGB")` straight away: it drops alpha, and the processor then sees an opaque image. Lens
//! follows the processor on an opened image, the common way to call it, for images with transparency;
//! for opaque ones the two agree.
//!
//! Decoders: JPEG by this crate's port of libjpeg-turbo's decompression path (`src/image/jpeg.rs`; the
//! `image` crate's zune-jpeg differs from libjpeg-turbo by up to 6 levels on 4:2:0 photos); GIF by the
//! `gif` crate, composed as PIL composes it; PNG and WebP by the `image` crate (png, image-webp). All of
//! them match Pillow 13's output bit for bit on the test fixtures, lossy WebP included. Known differences,
//! on files that break the PNG specification: a palette tRNS longer than the PLTE is ignored by the `png`
//! crate (PIL applies it), and a tRNS after IDAT or twice, or on a grey + alpha / RGBA PNG, is an error
//! there (PIL ignores or applies it).
//!
//! Nothing here does I/O: every function takes the whole file as a byte slice.

mod alpha;
mod decode;
mod format;
mod gif;
mod header;
mod jpeg;
mod orientation;
mod types;

pub use decode::{decode_image, probe_image};
pub use format::ImageFormat;
pub(crate) use orientation::read_tags;
pub use orientation::{ExifFields, apply_orientation};
pub use types::{DecodeLimits, ImageInfo, RgbImage};
