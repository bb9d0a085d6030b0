//! Helpers shared by the catalog integration tests (`catalog_*.rs`).

use lens_store::NewImage;
use sha2::{Digest, Sha256};

pub const MODEL: &str = "clip-vit-base-patch32";

pub fn new_image(seed: &str, tags: &[&str]) -> NewImage {
    NewImage {
        sha256: hex::encode(Sha256::digest(seed.as_bytes())),
        mime: "image/png".into(),
        width: 640,
        height: 480,
        bytes: 1234,
        source_url: Some(format!("https://example.com/{seed}.png")),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

pub fn vector(seed: f32, dim: usize) -> Vec<f32> {
    (0..dim).map(|i| seed + i as f32 * 0.25).collect()
}
