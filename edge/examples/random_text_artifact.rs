//! Writes a text-only int8 artifact of CLIP ViT-B/32's size (63 M weights: 12 layers of 512, the 49,408 ×
//! 512 token table) with random weights and the real CLIP tokenizer, for the edge's opt-in full-size run
//! (`scripts/test-edge.sh --full`): no checkpoint can be downloaded here, and the edge's memory depends on
//! the size, not the values.
//!
//!   cargo run --release -p lens-edge --features full-size-example --example random_text_artifact -- OUT.lens

use std::cell::RefCell;

use burn::backend::NdArray;
use lens_models::artifact::{ArtifactSource, ArtifactWriter, Engine};
use lens_models::clip::{ClipConfig, ClipTextTower, TEXT_FAMILY};
use lens_models::weights::VarBuilder;

/// `CLIPConfig()`'s defaults are ViT-B/32's.
const CONFIG: &[u8] = br#"{"model_type":"clip","projection_dim":512}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).ok_or("usage: random_text_artifact OUT.lens")?;
    let tokenizer =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/fixtures/tokenizer/clip/tokenizer.json"))?;
    let config = ClipConfig::from_json(CONFIG)?;
    let source = ArtifactSource { id: "clip-vit-b-32-random@edge-full-size".into(), name: "random ViT-B/32".into() };
    let mut writer = ArtifactWriter::new(Engine::BurnInt8, TEXT_FAMILY, source);
    writer.add_bytes("config.json", CONFIG)?;
    writer.add_bytes("tokenizer.json", &tokenizer)?;
    let writer = RefCell::new(writer);
    let vb = VarBuilder::<NdArray>::random_quantizing(0x11E5, 0.02, &writer, &Default::default());
    ClipTextTower::load(&vb, &config.text_config, config.projection_dim)?;
    let bytes = writer.into_inner().finish()?;
    std::fs::write(&out, &bytes)?;
    println!("{out}: {} bytes", bytes.len());
    Ok(())
}
