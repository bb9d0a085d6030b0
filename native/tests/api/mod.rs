//! The HTTP API in process: `lens::serve::app` over the tiny CLIP (and BLIP) fixtures, driven with
//! `tower::ServiceExt::oneshot` — one behaviour per test. What only a real process shows (start-up,
//! signals, kill -9, S3 from the environment) is in `tests/process.rs`.

mod analysis;
mod captions;
mod chat;
mod errors;
mod history;
mod images;
mod jobs;
mod knowledge;
mod moderation;
mod remote_chat;
mod search;
mod sync;
mod system;

use burn::backend::NdArray;
use lens_core::image::{DecodeLimits, decode_image};
use lens_models::clip::LoadedClip;

/// Scores are cosines of f32 embeddings computed apart: equal within this.
pub const SCORE_TOLERANCE: f64 = 1e-5;

/// Embeddings computed without the server (lens-models directly): what scores are checked against.
pub struct Reference(LoadedClip<NdArray<f32>>);

impl Reference {
    pub fn new() -> Self {
        let (model, _) = LoadedClip::open(&crate::common::files::fixture_model(), &Default::default()).unwrap();
        Self(model)
    }

    pub fn text(&self, text: &str) -> Vec<f64> {
        widen(&self.0.embed_texts(&[text]).unwrap()[0])
    }

    pub fn image(&self, name: &str) -> Vec<f64> {
        let image = decode_image(&crate::common::files::image_bytes(name), &DecodeLimits::default()).unwrap();
        widen(&self.0.embed_images(&[image]).unwrap()[0])
    }
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The ids of a `{"results": [...]}` answer, in order.
pub fn ids(results: &serde_json::Value) -> Vec<String> {
    results["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

/// A float array of a JSON answer.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}
