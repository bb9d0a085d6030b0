//! CLIP in the browser: model load, image embedding (with and without pre-processing, batch 1 and a
//! small batch) and text queries, for one loaded [`ClipPipeline`]. The same rows run for the int8
//! artifact and the fp32 checkpoint, so the table can put them side by side.

use burn::tensor::backend::Backend;
use lens_core::image::{DecodeLimits, RgbImage, decode_image};
use lens_models::clip::ClipPipeline;
use lens_models::tokenizer::TextTokenizer;

use crate::clock;
use crate::report::Row;

/// The targets for the int8 model, ms: issue 16's (issue 5 had asked 30 ms for the text query).
pub const TEXT_TARGET_MS: f64 = 15.0;
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
    /// The query's embedding from the whole padded context, which must equal `text`.
    pub text_padded: Vec<f32>,
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
        clock::time(iters.warmup, iters.text, || pipeline.tokenizer.encode(inputs.query).expect("tokenizing a query"));
    rows.push(Row::new("text query: tokenize only", engine, samples));

    let samples =
        clock::time(iters.warmup, iters.text, || pipeline.embed_texts(&[inputs.query]).expect("embedding a query"));
    rows.push(target(
        Row::new(format!("text query, batch 1: \"{}\" (tokenize → embedding)", inputs.query), engine, samples),
        TEXT_TARGET_MS,
    ));

    // The pipeline runs the text tower only up to the end-of-text token (the tower is causal and pools
    // there); this row runs the whole padded context, to show what that saves.
    let encoded = pipeline.tokenizer.encode(inputs.query).expect("tokenizing a query");
    let (ids, mask) = (vec![encoded.ids], vec![encoded.attention_mask]);
    let samples = clock::time(iters.warmup, iters.text, || {
        pipeline.model.get_text_features(&ids, Some(&mask)).expect("a token row").into_data()
    });
    rows.push(Row::new(format!("text tower on all {} padded tokens (model only)", ids[0].len()), engine, samples));

    let image = pipeline.embed_images(&[decode(bytes)]).expect("embedding a decoded photo").remove(0);
    let text = pipeline.embed_texts(&[inputs.query]).expect("embedding a query").remove(0);
    let padded = pipeline.model.get_text_features(&ids, Some(&mask)).expect("a token row").into_data();
    let text_padded = lens_core::vector::normalized(padded.convert::<f32>().to_vec().expect("f32 features"));
    (rows, Outputs { image, text, text_padded })
}
