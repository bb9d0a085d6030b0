//! Types every Lens target shares: image decoding and exact CLIP pre-processing, vector math, errors.
//!
//! No I/O and no async: functions take bytes and values and return values, so the crate builds for
//! `wasm32-unknown-unknown` (browser, edge) as well as native.
//!
//! - [`image`]: JPEG / PNG / GIF / WebP bytes to RGB8, with limits, as `transformers.image_utils.load_image`.
//! - [`resample`]: Pillow's resize, bit-exact.
//! - [`preprocess`]: `CLIPImageProcessor`, bit-exact given the same decoded pixels.
//! - [`vector`]: L2 normalisation, dot / cosine, softmax.
//! - [`colors`]: dominant colours (k-means in CIE L*a*b*).
//! - [`metadata`]: format, upright size, orientation and basic EXIF tags, from the headers.

pub mod colors;
pub mod error;
pub mod image;
pub mod metadata;
pub mod preprocess;
pub mod resample;
pub mod rng;
pub mod vector;

pub use error::{Error, Result};
