//! CLIP to a `burn-int8` [`crate::artifact`]: [`quantize_clip`] runs the model loader itself over a
//! checkpoint with a quantizing [`VarBuilder`], so the artifact holds exactly what loading asks for.
//! The int8 scheme and kernels are in [`crate::int8`].

use std::cell::RefCell;

use super::config::ClipConfig;
use super::model::{ClipModel, ClipTextTower};
use super::pipeline::{TEXT_FAMILY, read_settings};
use crate::Result;
use crate::artifact::{ArtifactSource, ArtifactWriter, Engine, SectionDtype};
use crate::files::CheckpointFiles;
use crate::int8::{SCHEME_ACTIVATIONS, SCHEME_WEIGHTS};
use crate::weights::{VarBuilder, Weights};

/// The backend the quantizer loads through (it only needs somewhere to put the small f32 tensors).
type Cpu = burn::backend::NdArray<f32>;

/// Checkpoint files carried into a CLIP artifact as `bytes` sections, in this order.
const CLIP_FILES: [&str; 4] = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"];

/// Turn a CLIP checkpoint into a `burn-int8` artifact: every matrix (attention and MLP projections,
/// the two output projections, the patch embedding, the token embedding) as int8 with per-row scales,
/// the small tensors (norms, biases, position and class embeddings, `logit_scale`) as f32, and the
/// config, image processor and tokenizer files as they are.
///
/// The checkpoint is validated the way loading it validates it: the config, image processor and
/// tokenizer must parse and fit, and every tensor the architecture needs must be present with its
/// shape — the artifact is written by running [`ClipModel::load`] itself over the checkpoint, so it
/// holds exactly the sections loading it asks for. The same input always gives the same bytes.
/// Peak memory is the checkpoint plus its int8 copy.
pub fn quantize_clip(files: CheckpointFiles, source: ArtifactSource) -> Result<Vec<u8>> {
    quantize(files, source, Towers::Both)
}

/// [`quantize_clip`] of the text half alone: the text tower, its projection, the config and the
/// tokenizer (no image processor), family [`TEXT_FAMILY`], with the same `source` id as the full
/// artifact — its text embeddings are those of the full artifact, bit for bit. About 40% of a
/// ViT-B/32 artifact: what fits a 128 MB Worker isolate (the edge).
pub fn quantize_clip_text(files: CheckpointFiles, source: ArtifactSource) -> Result<Vec<u8>> {
    quantize(files, source, Towers::Text)
}

enum Towers {
    Both,
    Text,
}

fn quantize(files: CheckpointFiles, source: ArtifactSource, towers: Towers) -> Result<Vec<u8>> {
    // The whole checkpoint is validated either way: a text artifact is the text half of a CLIP that loads.
    let (config, _, _) =
        read_settings(&files.config, &files.preprocessor_config, &files.tokenizer, files.tokenizer_config.as_deref())?;
    let weights = Weights::from_buffers(files.weights)?;
    let family = match towers {
        Towers::Both => "clip",
        Towers::Text => TEXT_FAMILY,
    };
    let mut writer = ArtifactWriter::new(Engine::BurnInt8, family, source);
    writer.set_meta(serde_json::json!({ "weights": SCHEME_WEIGHTS, "activations": SCHEME_ACTIVATIONS }));
    let contents = [
        Some(&files.config),
        matches!(towers, Towers::Both).then_some(&files.preprocessor_config),
        Some(&files.tokenizer),
        files.tokenizer_config.as_ref(),
    ];
    for (name, bytes) in CLIP_FILES.iter().zip(contents) {
        if let Some(bytes) = bytes {
            writer.add_bytes(name, bytes)?;
        }
    }
    let writer = RefCell::new(writer);
    let vb = VarBuilder::quantizing(&weights, &writer, &Default::default());
    match towers {
        Towers::Both => drop(ClipModel::<Cpu>::load(&vb, &config)?),
        Towers::Text => drop(ClipTextTower::<Cpu>::load(&vb, &config.text_config, config.projection_dim)?),
    }
    writer.into_inner().finish()
}

/// The published name and shape of every tensor a CLIP of this config loads, in loading order (to
/// build checkpoints for tests and benchmarks).
pub fn clip_tensor_shapes(config: &ClipConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let writer = RefCell::new(ArtifactWriter::new(Engine::BurnInt8, "clip", ArtifactSource::default()));
    ClipModel::<Cpu>::load(&VarBuilder::random_quantizing(0, 0.0, &writer, &Default::default()), config)?;
    let writer = writer.into_inner();
    Ok(writer
        .sections()
        .iter()
        .filter(|s| !(s.name.ends_with(".scale") && s.dtype == SectionDtype::F32 && s.name.contains(".weight.")))
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect())
}
