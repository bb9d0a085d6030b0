//! What every Lens target shares: the API's wire types, content ids, limits, image decoding and exact
//! CLIP pre-processing, thumbnails, vector math and ranking.
//!
//! No I/O and no async: functions take bytes and values and return values, so the crate builds for
//! `wasm32-unknown-unknown` (browser, edge) as well as native.
//!
//! - [`api`]: the HTTP API's request and response bodies and the error body with its stable codes.
//! - [`ids`]: SHA-256 content hashes and the public id rule; [`limits`]: checks on client input.
//! - [`ranking`]: search options, filtered search rounds, the hybrid vector + caption score.
//! - [`thumbnail`]: JPEG thumbnails, the same on the server and in the browser.
//! - [`image`]: JPEG / PNG / GIF / WebP bytes to RGB8, with limits, as `transformers.image_utils.load_image`.
//! - [`resample`]: Pillow's resize, bit-exact.
//! - [`preprocess`]: `CLIPImageProcessor`, bit-exact given the same decoded pixels.
//! - [`vector`]: L2 normalisation, dot / cosine, softmax.
//! - [`colors`]: dominant colours (k-means in CIE L*a*b*).
//! - [`documents`]: knowledge-base uploads (JSON, JSON Lines, CSV) and their chunks.
//! - [`metadata`]: format, upright size, orientation and basic EXIF tags, from the headers.
//! - [`fuzzing`]: the entry points of the fuzz targets (`fuzz/`) and of the corpus replay test.

pub mod api;
pub mod colors;
pub mod documents;
pub mod error;
pub mod fuzzing;
pub mod ids;
pub mod image;
pub mod limits;
pub mod metadata;
pub mod preprocess;
pub mod ranking;
pub mod resample;
pub mod rng;
pub mod thumbnail;
pub mod vector;

pub use error::{Error, Result};
