//! `POST /v1/search` (text, image URL, stored image), `POST /v1/search/image` (upload),
//! `GET /v1/images/{id}/duplicates`, `POST /v1/embeddings`.
//!
//! Text queries are hybrid when the weight `w` (`--hybrid-weight`, or `hybrid_weight` per request) is
//! above 0:
//!
//! ```text
//! score         = (1 - w) * vector_score + w * caption_score      (images with a caption)
//!               = vector_score                                    (images without one yet)
//! vector_score  = cos(CLIP text embedding of the query, CLIP image embedding)
//! caption_score = (keyword + semantic) / 2
//! keyword       = bm25 / max bm25 over the candidates  (FTS5 bm25 of the query's words in the caption,
//!                 sign flipped: the best keyword match among the candidates is 1, no match 0)
//! semantic      = max(0, cos(query text embedding, caption text embedding))   (0 until embedded)
//! candidates    = vector top N ∪ caption keyword top N,  N = max(4k, 50)
//! ```
//!
//! so an image found only through the words of its caption is still a candidate. `w = 0` is the
//! plain vector search, unchanged. `threshold` applies to `score`.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use lens_index::Hit;
use lens_store::ImageRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::images::{blob_path, decode_checked, find, read_field};
use super::state::{AppState, SharedState};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    text: Option<String>,
    image_url: Option<String>,
    image_id: Option<String>,
    k: Option<usize>,
    threshold: Option<f32>,
    /// Only images carrying this tag.
    tag: Option<String>,
    /// Weight of the caption score for text queries, 0 to 1 (default `--hybrid-weight`).
    hybrid_weight: Option<f32>,
}

struct SearchOptions {
    k: usize,
    threshold: Option<f32>,
    tag: Option<String>,
    exclude: Option<u64>,
}

impl SearchOptions {
    fn new(state: &AppState, k: Option<usize>, threshold: Option<f32>, tag: Option<String>) -> ApiResult<Self> {
        let k = k.unwrap_or(10);
        if k == 0 || k > state.config.max_k {
            return Err(ApiError::bad_request(format!("k must be between 1 and {}", state.config.max_k)));
        }
        if let Some(t) = threshold
            && !(-1.0..=1.0).contains(&t)
        {
            return Err(ApiError::bad_request("threshold is a cosine similarity, between -1 and 1"));
        }
        if tag.as_ref().is_some_and(|t| t.len() > 256) {
            return Err(ApiError::bad_request("tag too long"));
        }
        Ok(Self { k, threshold, tag, exclude: None })
    }
}

/// A query text's embedding, after the length limit.
pub async fn text_embedding(state: &AppState, text: String) -> ApiResult<Vec<f32>> {
    if text.len() > state.config.max_text_bytes {
        return Err(ApiError::too_large(format!(
            "text is {} bytes, over the limit of {}",
            text.len(),
            state.config.max_text_bytes
        )));
    }
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("text is empty"));
    }
    first(state.engine()?.embedder.embed_texts(vec![text]).await?)
}

pub async fn url_embedding(state: &AppState, url: &str) -> ApiResult<Vec<f32>> {
    let fetched = state.fetcher.fetch(url).await?;
    bytes_embedding(state, fetched.bytes).await
}

async fn bytes_embedding(state: &AppState, bytes: bytes::Bytes) -> ApiResult<Vec<f32>> {
    if bytes.len() > state.config.max_file_bytes {
        return Err(ApiError::too_large(format!("file is over the limit of {} bytes", state.config.max_file_bytes)));
    }
    let (_, image, _) = decode_checked(state, bytes).await?;
    first(state.engine()?.embedder.embed_images(vec![image]).await?)
}

/// A stored image's embedding, read from the catalog (no model run).
async fn stored_embedding(state: &AppState, id: String) -> ApiResult<(ImageRecord, Vec<f32>)> {
    let record = find(state, id).await?;
    let (key, model) = (record.key, state.engine()?.model.id.clone());
    let vector = state.catalog(move |c| c.embedding(key, &model)).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_embedded",
            format!("image {} has no embedding for the loaded model yet", record.id),
        )
    })?;
    Ok((record, vector))
}

fn first(mut rows: Vec<Vec<f32>>) -> ApiResult<Vec<f32>> {
    rows.pop().ok_or_else(|| ApiError::internal("the model returned no embedding"))
}

/// k-NN, threshold, tag filter and catalog join. With a tag, candidates are fetched in growing rounds
/// until `k` of them carry it or the index is exhausted, so the filter never hides a match.
async fn run_search(state: &AppState, query: Vec<f32>, options: SearchOptions) -> ApiResult<Vec<Value>> {
    let engine = state.engine()?;
    let started = std::time::Instant::now();
    let total = engine.index.len();
    let mut want = if options.tag.is_some() { (options.k * 4).max(64) } else { options.k }
        + usize::from(options.exclude.is_some());
    loop {
        let exclude = options.exclude;
        let filter = move |id: u64| Some(id) != exclude;
        let hits: Vec<Hit> = engine.index.search(&query, want.min(total.max(1)), Some(&filter))?;
        let hits: Vec<Hit> = hits.into_iter().filter(|h| options.threshold.is_none_or(|t| h.score >= t)).collect();
        let exhausted = hits.len() < want.min(total);
        let keys: Vec<i64> = hits.iter().map(|h| h.id as i64).collect();
        let records = state.catalog(move |c| c.images_by_keys(&keys)).await?;
        let mut results = Vec::with_capacity(options.k);
        for hit in &hits {
            let Some(record) = records.iter().find(|r| r.key as u64 == hit.id) else { continue };
            if let Some(tag) = &options.tag
                && !record.tags.contains(tag)
            {
                continue;
            }
            results.push(result_json(record, hit.score, hit.score, None));
            if results.len() == options.k {
                break;
            }
        }
        if results.len() == options.k || exhausted || want >= total {
            metrics::histogram!("lens_search_seconds").record(started.elapsed().as_secs_f64());
            return Ok(results);
        }
        want = (want * 4).min(total);
    }
}

/// One search result.
fn result_json(record: &ImageRecord, score: f32, vector_score: f32, caption_score: Option<f32>) -> Value {
    json!({
        "id": record.id,
        "score": score,
        "vector_score": vector_score,
        "caption_score": caption_score,
        "caption": record.caption,
        "tags": record.tags,
        "colors": record.colors,
        "metadata": record.metadata,
        "url": blob_path(&record.id),
    })
}

/// A hybrid candidate's parts before scoring.
struct Candidate {
    record: ImageRecord,
    vector_score: f32,
    keyword: f64,
    semantic: Option<f32>,
}

/// Text search blending the CLIP vector score with the caption score (see the module docs).
async fn run_hybrid(
    state: &AppState,
    text: String,
    query: Vec<f32>,
    weight: f32,
    options: SearchOptions,
) -> ApiResult<Vec<Value>> {
    let engine = state.engine()?;
    let started = std::time::Instant::now();
    let total = engine.index.len();
    let mut n = (options.k * 4).max(50);
    loop {
        let vector_hits = engine.index.search(&query, n.min(total.max(1)), None)?;
        let (fts_text, fts_n) = (text.clone(), n);
        let keyword_hits = state.catalog(move |c| c.search_captions(&fts_text, fts_n)).await?;
        let mut keys: Vec<i64> = vector_hits.iter().map(|h| h.id as i64).collect();
        let seen: HashSet<i64> = keys.iter().copied().collect();
        let only_keyword: Vec<i64> = keyword_hits.iter().map(|h| h.0).filter(|k| !seen.contains(k)).collect();
        keys.extend(&only_keyword);
        let model = engine.model.id.clone();
        let (fts_text, lookup) = (text.clone(), keys.clone());
        let (records, keyword, captions, images) = state
            .catalog(move |c| {
                Ok((
                    c.images_by_keys(&lookup)?,
                    c.caption_match_scores(&fts_text, &lookup)?,
                    c.caption_embeddings(&lookup, &model)?,
                    c.embeddings(&only_keyword, &model)?,
                ))
            })
            .await?;
        let vector: HashMap<i64, f32> = vector_hits.iter().map(|h| (h.id as i64, h.score)).collect();
        let mut candidates = Vec::with_capacity(records.len());
        for record in records {
            if let Some(tag) = &options.tag
                && !record.tags.contains(tag)
            {
                continue;
            }
            let key = record.key;
            let vector_score = match (vector.get(&key), images.get(&key)) {
                (Some(score), _) => *score,
                (None, Some(embedding)) => lens_core::vector::cosine(&query, embedding),
                (None, None) => continue, // no embedding for this model: not searchable
            };
            let semantic = captions.get(&key).map(|e| lens_core::vector::cosine(&query, e).max(0.0));
            candidates.push(Candidate {
                record,
                vector_score,
                keyword: keyword.get(&key).copied().unwrap_or(0.0),
                semantic,
            });
        }
        let best_keyword = candidates.iter().map(|c| c.keyword).fold(0.0, f64::max);
        let mut scored: Vec<(f32, f32, Option<f32>, ImageRecord)> = candidates
            .into_iter()
            .map(|c| {
                let caption_score = c.record.caption.as_ref().map(|_| {
                    let keyword = if best_keyword > 0.0 { (c.keyword / best_keyword) as f32 } else { 0.0 };
                    (keyword + c.semantic.unwrap_or(0.0)) / 2.0
                });
                let score = match caption_score {
                    Some(cs) => (1.0 - weight) * c.vector_score + weight * cs,
                    None => c.vector_score,
                };
                (score, c.vector_score, caption_score, c.record)
            })
            .filter(|(score, ..)| options.threshold.is_none_or(|t| *score >= t))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.3.key.cmp(&b.3.key)));
        scored.truncate(options.k);
        let exhausted = n >= total && keyword_hits.len() < n;
        if scored.len() == options.k || options.tag.is_none() || exhausted {
            metrics::histogram!("lens_search_seconds").record(started.elapsed().as_secs_f64());
            return Ok(scored.iter().map(|(score, v, c, record)| result_json(record, *score, *v, *c)).collect());
        }
        n = n.saturating_mul(4);
    }
}

/// `POST /v1/search`
pub async fn search(
    State(state): State<SharedState>,
    body: Result<Json<SearchRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(req) = body?;
    let options = SearchOptions::new(&state, req.k, req.threshold, req.tag)?;
    if let Some(w) = req.hybrid_weight {
        if !(0.0..=1.0).contains(&w) {
            return Err(ApiError::bad_request("hybrid_weight must be between 0 and 1"));
        }
        if req.text.is_none() {
            return Err(ApiError::bad_request("hybrid_weight applies to text queries only"));
        }
    }
    let query = match (req.text, req.image_url, req.image_id) {
        (Some(text), None, None) => {
            let weight = req.hybrid_weight.unwrap_or(state.config.hybrid_weight);
            let query = text_embedding(&state, text.clone()).await?;
            if weight > 0.0 {
                return Ok(Json(json!({"results": run_hybrid(&state, text, query, weight, options).await?})));
            }
            query
        }
        (None, Some(url), None) => url_embedding(&state, &url).await?,
        (None, None, Some(id)) => {
            // The image itself scores 1 and is kept (a search "by this image"); duplicates excludes it.
            stored_embedding(&state, id).await?.1
        }
        _ => return Err(ApiError::bad_request("give exactly one of `text`, `image_url`, `image_id`")),
    };
    Ok(Json(json!({"results": run_search(&state, query, options).await?})))
}

/// `POST /v1/search/image`: multipart with `file`, and optional `k`, `threshold`, `tag` fields.
pub async fn search_image(
    State(state): State<SharedState>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Json<Value>> {
    let mut multipart = multipart?;
    let (mut file, mut k, mut threshold, mut tag) = (None, None, None, None);
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" if file.is_none() => file = Some(read_field(&state, &mut field).await?),
            "k" | "threshold" | "tag" => {
                let text = field.text().await?;
                let bad = || ApiError::bad_request(format!("form field `{name}` is not valid"));
                match name.as_str() {
                    "k" => k = Some(text.trim().parse().map_err(|_| bad())?),
                    "threshold" => threshold = Some(text.trim().parse().map_err(|_| bad())?),
                    _ => tag = Some(text),
                }
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unexpected form field `{}`",
                    name.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    let options = SearchOptions::new(&state, k, threshold, tag)?;
    let bytes = file.ok_or_else(|| ApiError::bad_request("no `file` field in the form"))?;
    let query = bytes_embedding(&state, bytes).await?;
    Ok(Json(json!({"results": run_search(&state, query, options).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicatesQuery {
    threshold: Option<f32>,
    k: Option<usize>,
}

/// `GET /v1/images/{id}/duplicates?threshold=0.95&k=20`: other images whose embedding is within the
/// cosine threshold. (Byte-identical uploads are already one image: ingest dedups by sha256.)
pub async fn duplicates(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    query: Result<Query<DuplicatesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = query?;
    let mut options = SearchOptions::new(&state, Some(q.k.unwrap_or(20)), Some(q.threshold.unwrap_or(0.95)), None)?;
    let (record, vector) = stored_embedding(&state, id).await?;
    options.exclude = Some(record.key as u64);
    let results = run_search(&state, vector, options).await?;
    Ok(Json(json!({"id": record.id, "sha256": record.sha256, "duplicates": results})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// A string, or an array of strings and `{"image_url"}` / `{"image_id"}` objects.
    input: Value,
    /// Accepted for OpenAI compatibility; must name the loaded model when given.
    model: Option<String>,
    encoding_format: Option<String>,
}

/// Most inputs in one `/v1/embeddings` call.
const MAX_EMBEDDING_INPUTS: usize = 256;

/// `POST /v1/embeddings`, OpenAI-shaped: `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model"}`.
pub async fn embeddings(
    State(state): State<SharedState>,
    body: Result<Json<EmbeddingsRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(req) = body?;
    let engine = state.engine()?;
    if let Some(model) = &req.model
        && model != &engine.model.id
        && model != &engine.model.name
    {
        return Err(ApiError::not_found(format!(
            "model `{model}` is not loaded (this server has `{}`)",
            engine.model.id
        )));
    }
    if req.encoding_format.as_deref().is_some_and(|f| f != "float") {
        return Err(ApiError::bad_request("only encoding_format \"float\" is supported"));
    }
    let inputs = match req.input {
        Value::String(s) => vec![Value::String(s)],
        Value::Array(items) => items,
        _ => return Err(ApiError::bad_request("`input` must be a string or an array")),
    };
    if inputs.is_empty() || inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::bad_request(format!("`input` must have 1 to {MAX_EMBEDDING_INPUTS} items")));
    }
    let mut data = Vec::with_capacity(inputs.len());
    for (index, item) in inputs.into_iter().enumerate() {
        let embedding = match item {
            Value::String(text) => text_embedding(&state, text).await?,
            Value::Object(obj) => {
                match (obj.get("image_url").and_then(Value::as_str), obj.get("image_id").and_then(Value::as_str)) {
                    (Some(url), None) if obj.len() == 1 => url_embedding(&state, url).await?,
                    (None, Some(id)) if obj.len() == 1 => stored_embedding(&state, id.to_string()).await?.1,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "input {index}: an object needs exactly one of `image_url`, `image_id`"
                        )));
                    }
                }
            }
            _ => return Err(ApiError::bad_request(format!("input {index}: a string or an object"))),
        };
        data.push(json!({"object": "embedding", "index": index, "embedding": embedding}));
    }
    Ok(Json(json!({"object": "list", "data": data, "model": engine.model.id})))
}
