//! CLIP in the browser: model load, image embedding (with and without pre-processing, batch 1 and a
//! small batch) and text queries, for one loaded [`ClipPipeline`]. The same rows run for the int8
//! artifact and the fp32 checkpoint, so the table can put them side by side.

use burn::tensor::backend::Backend;
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_models::clip::ClipPipeline;
use lens_models::tokenizer::TextTokenizer;

use crate::clock;
use crate::report::Row;

/// The targets for the int8 model, ms.
pub const TEXT_TARGET_MS: f64 = 30.0;
pub const IMAGE_TARGET_MS: f64 = 150.0;

/// Repetitions of each measurement (after `warmup` untimed ones).
#[derive(Debug, Clone, Copy)]
pub struct Iters {
    pub warmup: usize,
    pub image: usize,
    pub batch: usize,
    pub text: usize,
}

/// What the CLIP rows run on.
pub struct Inputs<'a> {
    /// `(file name, encoded bytes)`; the first is the batch-1 photo, all of them make the batch.
    pub photos: &'a [(&'a str, &'a [u8])],
    /// A typical search-box query.
    pub query: &'a str,
}

/// Embeddings one engine produced, to compare engines on the same inputs.
pub struct Outputs {
    pub image: Vec<f32>,
    pub text: Vec<f32>,
    /// The query's embedding from its real tokens only (no padding), which must equal `text`.
    pub text_unpadded: Vec<f32>,
}

fn decode(bytes: &[u8]) -> RgbImage {
    decode_image(bytes, &DecodeLimits::default()).expect("the fixture photos decode")
}

/// Rows that do not depend on the model: decoding and pre-processing the batch-1 photo.
pub fn preprocess_row<B: Backend>(pipeline: &ClipPipeline<B>, inputs: &Inputs, iters: Iters) -> Row {
    let (name, bytes) = inputs.photos[0];
    let samples = clock::time(iters.warmup, iters.image, || pipeline.processor.preprocess(&decode(bytes)));
    Row::new(format!("decode + pre-process {name}"), "lens-core", samples)
}

/// The embedding rows of one engine (`int8` or `fp32`); targets are attached to the int8 rows.
pub fn embedding_rows<B: Backend>(
    pipeline: &ClipPipeline<B>,
    engine: &str,
    inputs: &Inputs,
    iters: Iters,
) -> (Vec<Row>, Outputs) {
    let target = |row: Row, ms: f64| if engine == "int8" { row.target(ms) } else { row };
    let (name, bytes) = inputs.photos[0];
    let mut rows = Vec::new();

    let samples = clock::time(iters.warmup, iters.image, || {
        pipeline.embed_images(&[decode(bytes)]).expect("embedding a decoded photo")
    });
    rows.push(target(Row::new(format!("image, batch 1: {name} bytes → embedding"), engine, samples), IMAGE_TARGET_MS));

    let pixels = pipeline.processor.preprocess(&decode(bytes));
    let samples = clock::time(iters.warmup, iters.image, || {
        pipeline.image_features(pixels.clone(), 1).expect("224² pixels").into_data()
    });
    rows.push(target(Row::new("image, batch 1: pixels → features (model only)", engine, samples), IMAGE_TARGET_MS));

    let images: Vec<RgbImage> = inputs.photos.iter().map(|(_, b)| decode(b)).collect();
    let n = images.len();
    let samples = clock::time(iters.warmup.min(1), iters.batch, || {
        pipeline.embed_images(&images).expect("embedding decoded photos")
    });
    rows.push(target(
        Row::new(format!("image, batch {n}, per image (pre-processing included)"), engine, samples.per_item(n)),
        IMAGE_TARGET_MS,
    ));

    let samples =
        clock::time(iters.warmup, iters.text, || pipeline.embed_texts(&[inputs.query]).expect("embedding a query"));
    rows.push(target(
        Row::new(format!("text query, batch 1: \"{}\" (padded to 77 tokens)", inputs.query), engine, samples),
        TEXT_TARGET_MS,
    ));

    // CLIP's text tower is causal and pools at the first EOS, so the padding after it cannot change the
    // embedding: this row shows what the 77-token padding costs.
    let encoded = pipeline.tokenizer.encode(inputs.query).expect("tokenizing a query");
    let real = encoded.attention_mask.iter().filter(|&&m| m == 1).count();
    let ids = vec![encoded.ids[..real].to_vec()];
    let samples = clock::time(iters.warmup, iters.text, || {
        pipeline.model.get_text_features(&ids, None).expect("a token row").into_data()
    });
    rows.push(target(
        Row::new(format!("text query, batch 1: the {real} real tokens only (model only)"), engine, samples),
        TEXT_TARGET_MS,
    ));

    let image = pipeline.embed_images(&[decode(bytes)]).expect("embedding a decoded photo").remove(0);
    let text = pipeline.embed_texts(&[inputs.query]).expect("embedding a query").remove(0);
    let unpadded = pipeline.model.get_text_features(&ids, None).expect("a token row").into_data();
    let text_unpadded = lens_core::vector::normalized(unpadded.convert::<f32>().to_vec().expect("f32 features"));
    (rows, Outputs { image, text, text_unpadded })
}
