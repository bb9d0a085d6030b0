//! Search by text, by image bytes, by URL or by a stored image; near-duplicates; embeddings. The
//! ranking itself (search rounds under a tag filter, the hybrid vector + caption score) is lens-core's
//! [`lens_core::ranking`], shared with the edge and the browser; this module feeds it from the index
//! and the catalog.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use lens_core::api::{self, ErrorCode, RequestError};
use lens_core::limits::check_query_text;
use lens_core::ranking::{
    HybridCandidate, HybridRounds, Round, Scored, SearchOptions, VectorRounds, check_hybrid_weight, rank_hybrid,
};
use lens_index::{Hit, IndexError};
use lens_store::{ImageRecord, StoreError};

use super::caller::Caller;
use super::errors::{NotReady, coded_enum};
use super::fetch::FetchError;
use super::images::{ImageError, decode_within_budget, find, typed};
use super::lens::Lens;
use crate::runtime::ModelError;

/// Most inputs in one `/v1/embeddings` call.
pub const MAX_EMBEDDING_INPUTS: usize = 256;

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error(transparent)]
    Input(#[from] ImageError),
    /// The stored image has no embedding by the loaded model yet.
    #[error("image {0} has no embedding for the loaded model yet")]
    NotEmbedded(String),
    /// `/v1/embeddings` named a model that is not loaded.
    #[error("model `{asked}` is not loaded (this server has `{loaded}`)")]
    UnknownModel { asked: String, loaded: String },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

coded_enum!(SearchError {
    wraps: [Invalid, NotReady, Input, Fetch, Model, Store, Index],
    own: [
        SearchError::NotEmbedded(_) => ErrorCode::NotEmbedded,
        SearchError::UnknownModel { .. } => ErrorCode::NotFound,
    ]
});

/// `POST /v1/search`: a text (hybrid when the text weight is above 0), an image URL or a stored image.
pub async fn search(
    lens: &Lens,
    caller: &Caller,
    request: api::SearchRequest,
) -> Result<api::SearchResponse, SearchError> {
    let options = SearchOptions::new(request.k, request.threshold, request.tag, lens.config.max_k)?;
    check_hybrid_weight(request.hybrid_weight, request.text.is_some())?;
    let query = match (request.text, request.image_url, request.image_id) {
        (Some(text), None, None) => {
            let weight = request.hybrid_weight.unwrap_or(lens.config.hybrid_weight);
            let query = text_embedding(lens, text.clone()).await?;
            if weight > 0.0 {
                return Ok(api::SearchResponse { results: hybrid(lens, caller, text, query, weight, options).await? });
            }
            query
        }
        (None, Some(url), None) => url_embedding(lens, &url).await?,
        // The image itself scores 1 and is kept (a search "by this image"); duplicates excludes it.
        (None, None, Some(id)) => stored_embedding(lens, caller, &id).await?.1,
        _ => return Err(RequestError::invalid("give exactly one of `text`, `image_url`, `image_id`").into()),
    };
    Ok(api::SearchResponse { results: vector(lens, caller, query, options).await? })
}

/// `POST /v1/search/image`: an uploaded image's neighbours.
pub async fn search_bytes(
    lens: &Lens,
    caller: &Caller,
    bytes: Bytes,
    options: SearchOptions,
) -> Result<api::SearchResponse, SearchError> {
    let query = bytes_embedding(lens, bytes).await?;
    Ok(api::SearchResponse { results: vector(lens, caller, query, options).await? })
}

/// Other images within `threshold` (default 0.95) of image `id`, at most `k` (default 20).
pub async fn duplicates(
    lens: &Lens,
    caller: &Caller,
    id: &str,
    query: api::DuplicatesQuery,
) -> Result<api::DuplicatesResponse, SearchError> {
    let mut options = SearchOptions::new(
        Some(query.k.unwrap_or(20)),
        Some(query.threshold.unwrap_or(0.95)),
        None,
        lens.config.max_k,
    )?;
    let (record, embedding) = stored_embedding(lens, caller, id).await?;
    options.exclude = Some(record.key as u64);
    let duplicates = vector(lens, caller, embedding, options).await?;
    Ok(api::DuplicatesResponse { id: record.id, sha256: record.sha256, duplicates })
}

/// `POST /v1/embeddings`, OpenAI-shaped: strings, `{"image_url"}` and `{"image_id"}` items.
pub async fn embeddings(
    lens: &Lens,
    caller: &Caller,
    request: api::EmbeddingsRequest,
) -> Result<api::EmbeddingsResponse, SearchError> {
    let ready = lens.ready()?;
    let loaded = ready.models.embedder_info();
    if let Some(model) = &request.model
        && model != loaded.id()
        && model != &loaded.identity.name
    {
        return Err(SearchError::UnknownModel { asked: model.clone(), loaded: loaded.id().to_string() });
    }
    if request.encoding_format.as_deref().is_some_and(|f| f != "float") {
        return Err(RequestError::invalid("only encoding_format \"float\" is supported").into());
    }
    use serde_json::Value;
    let inputs = match request.input {
        Value::String(s) => vec![Value::String(s)],
        Value::Array(items) => items,
        _ => return Err(RequestError::invalid("`input` must be a string or an array").into()),
    };
    if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(RequestError::invalid(format!("`input` must have 1 to {MAX_EMBEDDING_INPUTS} items")).into());
    }
    let mut data = Vec::with_capacity(inputs.len());
    for (index, item) in inputs.into_iter().enumerate() {
        let embedding = match item {
            Value::String(text) => text_embedding(lens, text).await?,
            Value::Object(obj) => {
                match (obj.get("image_url").and_then(Value::as_str), obj.get("image_id").and_then(Value::as_str)) {
                    (Some(url), None) if obj.len() == 1 => url_embedding(lens, url).await?,
                    (None, Some(id)) if obj.len() == 1 => stored_embedding(lens, caller, id).await?.1,
                    _ => {
                        return Err(RequestError::invalid(format!(
                            "input {index}: an object needs exactly one of `image_url`, `image_id`"
                        ))
                        .into());
                    }
                }
            }
            _ => return Err(RequestError::invalid(format!("input {index}: a string or an object")).into()),
        };
        data.push(api::EmbeddingData { object: "embedding".into(), index, embedding });
    }
    Ok(api::EmbeddingsResponse { object: "list".into(), data, model: loaded.id().to_string() })
}

/// A query text's embedding, after the length limit.
pub async fn text_embedding(lens: &Lens, text: String) -> Result<Vec<f32>, SearchError> {
    check_query_text(&text, lens.config.max_text_bytes)?;
    first(lens.ready()?.models.embedder().embed_texts(vec![text]).await?)
}

async fn url_embedding(lens: &Lens, url: &str) -> Result<Vec<f32>, SearchError> {
    let fetched = lens.fetcher.fetch(url).await?;
    bytes_embedding(lens, fetched.bytes).await
}

async fn bytes_embedding(lens: &Lens, bytes: Bytes) -> Result<Vec<f32>, SearchError> {
    if bytes.len() > lens.config.max_file_bytes {
        return Err(
            RequestError::too_large(format!("file is over the limit of {} bytes", lens.config.max_file_bytes)).into()
        );
    }
    let embedder = lens.ready()?.models.embedder().clone();
    let processor = embedder.processor();
    // Only the model's input outlives the decode (and its share of the pixel budget).
    let (pixels, ..) = decode_within_budget(lens, bytes, move |image, _| processor.preprocess(image)).await?;
    first(embedder.embed_pixels(vec![pixels]).await?)
}

/// A stored image's embedding, read from the catalog (no model run).
async fn stored_embedding(lens: &Lens, caller: &Caller, id: &str) -> Result<(ImageRecord, Vec<f32>), SearchError> {
    let record = find(lens, caller, id).await?;
    let (key, model) = (record.key, lens.ready()?.models.embedding_model().to_string());
    let vector = lens.catalog(move |c| c.embedding(key, &model)).await?;
    match vector {
        Some(vector) => Ok((record, vector)),
        None => Err(SearchError::NotEmbedded(record.id)),
    }
}

fn first(mut rows: Vec<Vec<f32>>) -> Result<Vec<f32>, SearchError> {
    rows.pop().ok_or(SearchError::Model(ModelError::Panicked("the model returned no embedding".into())))
}

fn scored(hits: Vec<Hit>) -> Vec<Scored> {
    hits.into_iter().map(|h| Scored { id: h.id, score: h.score }).collect()
}

/// k-NN, threshold, tag filter and catalog join (only the images the caller sees), in [`VectorRounds`].
async fn vector(
    lens: &Lens,
    caller: &Caller,
    query: Vec<f32>,
    options: SearchOptions,
) -> Result<Vec<api::SearchResult>, SearchError> {
    let ready = lens.ready()?;
    let started = std::time::Instant::now();
    let mut rounds = VectorRounds::new(&options, ready.index.len());
    loop {
        let exclude = options.exclude;
        let filter = move |id: u64| Some(id) != exclude;
        let hits = rounds.admit(scored(ready.index.search(&query, rounds.request(), Some(&filter))?));
        let (keys, who) = (hits.iter().map(|h| h.id as i64).collect::<Vec<_>>(), caller.clone());
        let records: HashMap<u64, ImageRecord> = lens
            .catalog(move |c| c.visible_images_by_keys(&keys, who.visible()))
            .await?
            .into_iter()
            .map(|r| (r.key as u64, r))
            .collect();
        let keep =
            |id: u64| records.get(&id).is_some_and(|r| options.tag.as_ref().is_none_or(|tag| r.tags.contains(tag)));
        if let Round::Done(found) = rounds.select(hits, keep) {
            metrics::histogram!("lens_search_seconds").record(started.elapsed().as_secs_f64());
            return Ok(found.iter().map(|h| result(&records[&h.id], h.score, h.score, None)).collect());
        }
    }
}

/// Text search blending the CLIP vector score with the score of the images' texts (caption, analysis), in
/// [`HybridRounds`].
async fn hybrid(
    lens: &Lens,
    caller: &Caller,
    text: String,
    query: Vec<f32>,
    weight: f32,
    options: SearchOptions,
) -> Result<Vec<api::SearchResult>, SearchError> {
    let ready = lens.ready()?;
    let started = std::time::Instant::now();
    let mut rounds = HybridRounds::new(&options, ready.index.len());
    loop {
        let vector_hits = ready.index.search(&query, rounds.index_request(), None)?;
        let (fts_text, fts_n) = (text.clone(), rounds.request());
        let keyword_hits = lens.catalog(move |c| c.search_texts(&fts_text, fts_n)).await?;
        let mut keys: Vec<i64> = vector_hits.iter().map(|h| h.id as i64).collect();
        let seen: HashSet<i64> = keys.iter().copied().collect();
        let only_keyword: Vec<i64> = keyword_hits.iter().map(|h| h.0).filter(|k| !seen.contains(k)).collect();
        keys.extend(&only_keyword);
        let model = ready.models.embedding_model().to_string();
        let (fts_text, lookup, who) = (text.clone(), keys.clone(), caller.clone());
        let (records, keyword, captions, analyses, images) = lens
            .catalog(move |c| {
                Ok((
                    c.visible_images_by_keys(&lookup, who.visible())?,
                    c.text_match_scores(&fts_text, &lookup)?,
                    c.caption_embeddings(&lookup, &model)?,
                    c.analysis_embeddings(&lookup, &model)?,
                    c.embeddings(&only_keyword, &model)?,
                ))
            })
            .await?;
        let vector_scores: HashMap<i64, f32> = vector_hits.iter().map(|h| (h.id as i64, h.score)).collect();
        let candidates: Vec<HybridCandidate> = records
            .iter()
            .filter(|r| options.tag.as_ref().is_none_or(|tag| r.tags.contains(tag)))
            .filter_map(|r| {
                let texts: Vec<&[f32]> =
                    [captions.get(&r.key), analyses.get(&r.key)].into_iter().flatten().map(Vec::as_slice).collect();
                HybridCandidate::new(
                    r.key as u64,
                    &query,
                    vector_scores.get(&r.key).copied(),
                    images.get(&r.key).map(Vec::as_slice),
                    &texts,
                    keyword.get(&r.key).copied().unwrap_or(0.0),
                    r.caption.is_some() || r.analysis.is_some(),
                )
            })
            .collect();
        let ranked = rank_hybrid(candidates, weight, options.threshold, options.k);
        if rounds.finish(ranked.len(), keyword_hits.len()) {
            metrics::histogram!("lens_search_seconds").record(started.elapsed().as_secs_f64());
            let by_key: HashMap<u64, &ImageRecord> = records.iter().map(|r| (r.key as u64, r)).collect();
            return Ok(ranked
                .iter()
                .map(|s| result(by_key[&s.id], s.score, s.vector_score, s.caption_score))
                .collect());
        }
    }
}

/// One search result.
fn result(record: &ImageRecord, score: f32, vector_score: f32, caption_score: Option<f32>) -> api::SearchResult {
    api::SearchResult {
        id: record.id.clone(),
        score,
        vector_score,
        caption_score,
        caption: record.caption.clone(),
        analysis: record.analysis.as_ref().map(|a| a.text.clone()),
        tags: record.tags.clone(),
        colors: typed(&record.colors, "colors", &record.id),
        metadata: typed(&record.metadata, "metadata", &record.id),
        url: api::blob_path(&record.id),
    }
}
