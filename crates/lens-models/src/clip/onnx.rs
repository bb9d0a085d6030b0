//! CLIP from ONNX exports, run by tract: the layout CLIP services publish (one graph per tower), fp32 or
//! int8, next to the checkpoint's `config.json`, tokenizer and image processor.
//!
//! The graphs, as `models/generate_onnx_fixtures.py` exports them:
//! - `visual.onnx`: `pixel_values` f32 `[batch, 3, size, size]` → `image_embeds` f32 `[batch, dim]`
//! - `textual.onnx`: `input_ids` i64 `[batch, seq]` (and `attention_mask` i64 `[batch, seq]` when the
//!   graph declares it) → `text_embeds` f32 `[batch, dim]`
//!
//! Both outputs are projected and not normalised (`get_image_features` / `get_text_features`);
//! [`OnnxClip`] normalises them, so its embeddings are interchangeable with
//! [`ClipPipeline`](super::pipeline::ClipPipeline)'s for the same weights. Tokenizing and
//! pre-processing are the pipeline's own, so only the graphs differ.

use std::sync::Arc;

use lens_core::image::RgbImage;
use lens_core::preprocess::ClipImageProcessor;
use sha2::{Digest, Sha256};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;

use super::config::ClipConfig;
use super::pipeline::{MAX_BATCH, normalized_chunks};
use crate::artifact::{Artifact, ArtifactSource, ArtifactWriter, Engine};
use crate::files;
use crate::tokenizer::{HfTokenizer, TextTokenizer};
use crate::{Error, Result};

/// Section (and file) names of the two graphs.
pub const VISUAL: &str = "visual.onnx";
pub const TEXTUAL: &str = "textual.onnx";

/// Ops that only appear in quantized graphs: their presence makes a graph int8.
const INT8_OPS: &[&str] = &[
    "MatMulInteger",
    "ConvInteger",
    "QLinearMatMul",
    "QLinearConv",
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulNBits",
    "GatherBlockQuantized",
];

type Plan = Arc<TypedRunnableModel>;

/// Numeric precision of a pair of graphs, read from the ops they contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnnxPrecision {
    Fp32,
    /// Integer matmuls or quantize/dequantize ops (dynamic or QDQ quantization).
    Int8,
}

impl OnnxPrecision {
    pub fn as_str(self) -> &'static str {
        match self {
            OnnxPrecision::Fp32 => "fp32",
            OnnxPrecision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for OnnxPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The files of an ONNX CLIP export: the two graphs and the checkpoint's JSON files.
#[derive(Debug, Default, Clone)]
pub struct OnnxClipFiles {
    /// `visual.onnx`
    pub visual: Vec<u8>,
    /// `textual.onnx`
    pub textual: Vec<u8>,
    /// `config.json` (HF `CLIPConfig`: the projection size, the image size and the context length)
    pub config: Vec<u8>,
    /// `tokenizer.json`
    pub tokenizer: Vec<u8>,
    /// `tokenizer_config.json`, when present.
    pub tokenizer_config: Option<Vec<u8>>,
    /// `preprocessor_config.json`
    pub preprocessor_config: Vec<u8>,
}

fn graph_error(graph: &str, message: impl std::fmt::Display) -> Error {
    Error::config(graph, message)
}

/// Parse a graph's protobuf (proves it is ONNX; [`model`] and [`precision`] read it without parsing again).
fn proto(graph: &str, bytes: &[u8]) -> Result<ModelProto> {
    tract_onnx::onnx()
        .proto_model_for_read(&mut &*bytes)
        .map_err(|e| graph_error(graph, format!("not an ONNX model: {e:#}")))
}

/// `Int8` when any of the graphs holds a quantized op in its main graph.
fn precision(graphs: &[&ModelProto]) -> OnnxPrecision {
    let int8 = graphs
        .iter()
        .filter_map(|proto| proto.graph.as_ref())
        .any(|g| g.node.iter().any(|n| INT8_OPS.contains(&n.op_type.as_str())));
    if int8 { OnnxPrecision::Int8 } else { OnnxPrecision::Fp32 }
}

/// `Int8` when either graph holds a quantized op.
pub fn precision_of(visual: &[u8], textual: &[u8]) -> Result<OnnxPrecision> {
    Ok(precision(&[&proto(VISUAL, visual)?, &proto(TEXTUAL, textual)?]))
}

impl OnnxClipFiles {
    /// Gather the files from an [`Engine::Onnx`] artifact (copies them out of its buffer: tract parses
    /// from bytes and keeps its own tensors, so the artifact can be dropped afterwards).
    pub fn from_artifact(artifact: &Artifact) -> Result<Self> {
        if artifact.engine() != Engine::Onnx {
            return Err(Error::Artifact {
                message: format!(
                    "engine is `{}`, not `onnx`: this artifact is not for the ONNX engine",
                    artifact.engine()
                ),
            });
        }
        if artifact.header().family != "clip" {
            return Err(Error::Artifact {
                message: format!("model family `{}`; the ONNX engine runs `clip`", artifact.header().family),
            });
        }
        Ok(OnnxClipFiles {
            visual: artifact.file(VISUAL)?.to_vec(),
            textual: artifact.file(TEXTUAL)?.to_vec(),
            config: artifact.file("config.json")?.to_vec(),
            tokenizer: artifact.file("tokenizer.json")?.to_vec(),
            tokenizer_config: artifact.bytes("tokenizer_config.json").map(<[u8]>::to_vec),
            preprocessor_config: artifact.file("preprocessor_config.json")?.to_vec(),
        })
    }

    /// An [`Engine::Onnx`] artifact holding these files, its `meta` naming the precision read from the
    /// graphs (`{"precision": "fp32" | "int8"}`). Both graphs are parsed first, so a file that is not
    /// ONNX is refused here rather than when the artifact is loaded.
    pub fn to_artifact(&self, source: ArtifactSource) -> Result<Vec<u8>> {
        let precision = precision_of(&self.visual, &self.textual)?;
        let mut w = ArtifactWriter::new(Engine::Onnx, "clip", source);
        w.set_meta(serde_json::json!({ "precision": precision.as_str() }));
        w.add_bytes(VISUAL, &self.visual)?;
        w.add_bytes(TEXTUAL, &self.textual)?;
        w.add_bytes("config.json", &self.config)?;
        w.add_bytes("preprocessor_config.json", &self.preprocessor_config)?;
        w.add_bytes("tokenizer.json", &self.tokenizer)?;
        if let Some(tc) = &self.tokenizer_config {
            w.add_bytes("tokenizer_config.json", tc)?;
        }
        w.finish()
    }

    /// Hex SHA-256 of both graphs (visual then textual): an identity for the weights they hold.
    pub fn graphs_sha256(&self) -> String {
        let mut h = Sha256::new();
        h.update(&self.visual);
        h.update(&self.textual);
        lens_core::ids::hex_lower(&h.finalize())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl OnnxClipFiles {
    /// Whether a directory looks like an ONNX CLIP export (it has both graphs).
    pub fn is_export_dir(dir: &std::path::Path) -> bool {
        dir.join(VISUAL).is_file() && dir.join(TEXTUAL).is_file()
    }

    /// Read `visual.onnx`, `textual.onnx`, `config.json`, `tokenizer.json`, optional
    /// `tokenizer_config.json` and `preprocessor_config.json` from a directory.
    pub fn read_dir(dir: &std::path::Path) -> Result<Self> {
        let read = |name: &str| files::read_file(dir, name);
        Ok(OnnxClipFiles {
            visual: read(VISUAL)?,
            textual: read(TEXTUAL)?,
            config: read("config.json")?,
            tokenizer: read("tokenizer.json")?,
            tokenizer_config: files::read_optional(dir, "tokenizer_config.json")?,
            preprocessor_config: read("preprocessor_config.json")?,
        })
    }
}

/// CLIP whose towers are ONNX graphs run by tract; same inputs and outputs as
/// [`ClipPipeline`](super::pipeline::ClipPipeline).
#[derive(Debug)]
pub struct OnnxClip {
    pub config: ClipConfig,
    pub tokenizer: HfTokenizer,
    pub processor: ClipImageProcessor,
    visual: Plan,
    textual: Plan,
    /// Whether `textual.onnx` takes `attention_mask` after `input_ids`.
    textual_mask: bool,
    precision: OnnxPrecision,
}

impl OnnxClip {
    /// Load from an [`Engine::Onnx`] artifact; refuses another engine or a missing section.
    pub fn from_artifact(artifact: &Artifact) -> Result<Self> {
        Self::load(&OnnxClipFiles::from_artifact(artifact)?)
    }

    /// Load from the two graphs and the checkpoint's JSON files (`files.visual` / `files.textual` are
    /// replaced by the given graphs).
    pub fn from_files(visual: Vec<u8>, textual: Vec<u8>, files: OnnxClipFiles) -> Result<Self> {
        Self::load(&OnnxClipFiles { visual, textual, ..files })
    }

    /// Parse both graphs, check their inputs and outputs against `config.json`, and optimise them for a
    /// symbolic batch (and sequence) size.
    pub fn load(files: &OnnxClipFiles) -> Result<Self> {
        avoid_amx_int8_kernels();
        let config = ClipConfig::from_json(&files.config)?;
        let processor = ClipImageProcessor::from_json(&files.preprocessor_config)?;
        let size = config.vision_config.image_size;
        files::check_image_size(&processor, size)?;
        let tokenizer = HfTokenizer::from_bytes(
            &files.tokenizer,
            files.tokenizer_config.as_deref(),
            config.text_config.max_position_embeddings,
            "<|endoftext|>",
        )?;
        let (visual, textual) = (proto(VISUAL, &files.visual)?, proto(TEXTUAL, &files.textual)?);
        let precision = precision(&[&visual, &textual]);
        let dim = config.projection_dim;

        let visual = model(VISUAL, &visual)?;
        check_io(VISUAL, &visual, &["pixel_values"], "image_embeds")?;
        let batch = visual.sym("batch");
        let pixels = InferenceFact::dt_shape(
            f32::datum_type(),
            tvec![TDim::from(batch), 3.to_dim(), size.to_dim(), size.to_dim()],
        );
        let visual = optimise(VISUAL, visual, &[pixels], dim)?;

        let textual = model(TEXTUAL, &textual)?;
        let textual_mask = textual.input_outlets().map_err(|e| graph_error(TEXTUAL, e))?.len() == 2;
        let inputs: &[&str] = if textual_mask { &["input_ids", "attention_mask"] } else { &["input_ids"] };
        check_io(TEXTUAL, &textual, inputs, "text_embeds")?;
        // The tokenizer always pads to the context length, so the sequence axis is fixed: exports that
        // pool with advanced indexing flatten `[batch, seq]`, which tract cannot type with two symbols.
        let seq = tokenizer.context_length();
        let ids = InferenceFact::dt_shape(i64::datum_type(), tvec![TDim::from(textual.sym("batch")), seq.to_dim()]);
        let facts = if textual_mask { vec![ids.clone(), ids] } else { vec![ids] };
        let textual = optimise(TEXTUAL, textual, &facts, dim)?;

        Ok(OnnxClip { config, tokenizer, processor, visual, textual, textual_mask, precision })
    }

    /// Embedding dimension (`projection_dim`).
    pub fn dim(&self) -> usize {
        self.config.projection_dim
    }

    /// fp32 or int8, read from the graphs' ops.
    pub fn precision(&self) -> OnnxPrecision {
        self.precision
    }

    /// L2-normalised embeddings of decoded RGB images, one per image.
    pub fn embed_images(&self, images: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(MAX_BATCH) {
            let pixels = self.processor.preprocess_batch(chunk);
            out.extend(normalized_chunks(&self.image_features(pixels, chunk.len())?, self.dim()));
        }
        Ok(out)
    }

    /// L2-normalised embeddings of texts, one per text.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(MAX_BATCH) {
            out.extend(normalized_chunks(&self.text_features(chunk)?, self.dim()));
        }
        Ok(out)
    }

    /// Projected image features (not normalised) from pre-processed pixels, row-major.
    ///
    /// # Shapes
    /// - pixels: `batch * 3 * size * size` values, NCHW → `batch * projection_dim` values
    pub fn image_features(&self, pixels: Vec<f32>, batch: usize) -> Result<Vec<f32>> {
        let size = self.config.vision_config.image_size;
        if batch == 0 || pixels.len() != batch * 3 * size * size {
            return Err(Error::invalid_input(format!(
                "{} pixel values do not make {batch} images of 3x{size}x{size}",
                pixels.len()
            )));
        }
        let input = tract_ndarray::Array4::from_shape_vec((batch, 3, size, size), pixels)
            .map_err(|e| Error::invalid_input(e.to_string()))?;
        run(VISUAL, &self.visual, tvec![Tensor::from(input).into_tvalue()], batch, self.dim())
    }

    /// Projected text features (not normalised), row-major: `texts.len() * projection_dim` values.
    pub fn text_features(&self, texts: &[&str]) -> Result<Vec<f32>> {
        if texts.is_empty() {
            return Err(Error::invalid_input("no text to embed"));
        }
        let encoded = self.tokenizer.encode_batch(texts)?;
        let seq = encoded[0].ids.len();
        let column = |pick: fn(&crate::tokenizer::TokenizedText) -> &[u32]| -> Result<TValue> {
            let values: Vec<i64> = encoded.iter().flat_map(|e| pick(e).iter().map(|&v| v as i64)).collect();
            let array = tract_ndarray::Array2::from_shape_vec((texts.len(), seq), values)
                .map_err(|e| Error::invalid_input(format!("token rows of unequal length: {e}")))?;
            Ok(Tensor::from(array).into_tvalue())
        };
        let mut inputs = tvec![column(|e| &e.ids)?];
        if self.textual_mask {
            inputs.push(column(|e| &e.attention_mask)?);
        }
        run(TEXTUAL, &self.textual, inputs, texts.len(), self.dim())
    }
}

/// tract 0.23.9 picks its AMX int8 matmul kernel on CPUs that have AMX (Sapphire Rapids and later), and
/// that kernel sometimes reads past its operands: the int8 ONNX tests died with SIGSEGV in about 1 run in
/// 15 on such a machine (a tile load in tract-linalg's `avx512amx_mmm_i32_16x16.S`, from a core dump), and
/// in none of 25 with the kernel left out. Left out here, below the environment: a `TRACT_CPU_ISA` the
/// user sets still decides. The AVX-512 VNNI kernels compute the same integers.
fn avoid_amx_int8_kernels() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another part of the process set the knob to something else: that one stands.
        let _ = tract_onnx::tract_core::knobs::set_config_global("TRACT_CPU_ISA", "-amx-int8");
    });
}

fn model(graph: &str, proto: &ModelProto) -> Result<InferenceModel> {
    tract_onnx::onnx().model_for_proto_model(proto).map_err(|e| graph_error(graph, format!("{e:#}")))
}

/// Refuses a graph whose inputs or output are not the ones the published exports use.
fn check_io(graph: &str, model: &InferenceModel, inputs: &[&str], output: &str) -> Result<()> {
    let err = |e: TractError| graph_error(graph, e);
    let found: Vec<String> =
        model.input_outlets().map_err(err)?.iter().map(|o| model.node(o.node).name.clone()).collect();
    if found != inputs {
        return Err(graph_error(graph, format!("inputs are {found:?}, expected {inputs:?}")));
    }
    let outputs: Vec<String> = model
        .output_outlets()
        .map_err(err)?
        .iter()
        .map(|&o| model.outlet_label(o).map(str::to_string).unwrap_or_else(|| model.node(o.node).name.clone()))
        .collect();
    if outputs != [output] {
        return Err(graph_error(graph, format!("outputs are {outputs:?}, expected [\"{output}\"]")));
    }
    Ok(())
}

/// Type the graph for `inputs`, optimise it, and check that it yields f32 `[batch, dim]`.
fn optimise(graph: &str, mut model: InferenceModel, inputs: &[InferenceFact], dim: usize) -> Result<Plan> {
    let err = |e: TractError| graph_error(graph, format!("{e:#}"));
    for (i, fact) in inputs.iter().enumerate() {
        model.set_input_fact(i, fact.clone()).map_err(err)?;
    }
    let typed = model.into_optimized().map_err(err)?;
    let fact = typed.output_fact(0).map_err(err)?;
    let last = fact.shape.last().and_then(|d| d.to_i64().ok());
    if fact.datum_type != f32::datum_type() || fact.shape.len() != 2 || last != Some(dim as i64) {
        return Err(graph_error(
            graph,
            format!("output is {fact:?}, expected F32 [batch, {dim}] (projection_dim of config.json)"),
        ));
    }
    typed.into_runnable().map_err(err)
}

/// Run a plan and check it returned `rows` × `dim` f32 values.
fn run(graph: &str, plan: &Plan, inputs: TVec<TValue>, rows: usize, dim: usize) -> Result<Vec<f32>> {
    let outputs = plan.run(inputs).map_err(|e| graph_error(graph, format!("run failed: {e:#}")))?;
    let out = &outputs[0];
    if out.shape() != [rows, dim] {
        return Err(graph_error(graph, format!("returned shape {:?}, expected [{rows}, {dim}]", out.shape())));
    }
    let values = out.to_plain_array_view::<f32>().map_err(|e| graph_error(graph, e))?;
    Ok(values.iter().copied().collect())
}
