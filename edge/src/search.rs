//! `POST /v1/search` at the edge: which requests it answers itself (text, as a plain vector search) and
//! which go to the origin (image queries, hybrid text weights), the checks the server makes (lens-core's),
//! and the merge of the shards' hits into the server's response shape.

use lens_core::api::{RequestError, SearchRequest, SearchResponse, SearchResult};
use lens_core::limits::check_query_text;
use lens_core::ranking::{SearchOptions, check_hybrid_weight};
use serde::{Deserialize, Serialize};

/// What the edge accepts from outside.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Most results a search returns (the server's `max_k`).
    pub max_k: usize,
    /// Longest query text, in bytes (the server's `max_text_bytes`).
    pub max_text_bytes: usize,
    /// Largest search body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    /// The server's defaults (`lens serve`'s `[limits]`), and 64 KiB of JSON.
    fn default() -> Self {
        Self { max_k: 1000, max_text_bytes: 2000, max_body_bytes: 64 << 10 }
    }
}

/// Who answers a search.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// The edge: embed the text with the int8 text tower, scan the shards.
    Edge { text: String, options: SearchOptions },
    /// The origin: an image query needs the image tower, a hybrid weight the caption embeddings.
    Origin,
}

/// A JSON body within the size limit, with the server's codes: `too_large`, `invalid_json` when it does
/// not parse, `invalid_request` when it has the wrong shape.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], limits: &Limits, what: &str) -> Result<T, RequestError> {
    use lens_core::api::ErrorCode;
    if body.len() > limits.max_body_bytes {
        return Err(RequestError::too_large(format!("the body is over {} bytes", limits.max_body_bytes)));
    }
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() { ErrorCode::InvalidRequest } else { ErrorCode::InvalidJson };
        RequestError::new(code, format!("the body is not {what}: {e}"))
    })
}

/// Checks a search body as the server would and says who answers it.
///
/// # Errors
/// The server's error for the same request: 400 for JSON that does not parse, 422 for the wrong shape,
/// a [`RequestError`] for values out of range.
pub fn route(body: &[u8], limits: &Limits) -> Result<Route, RequestError> {
    let request: SearchRequest = parse_body(body, limits, "a search request")?;
    let options = SearchOptions::new(request.k, request.threshold, request.tag.clone(), limits.max_k)?;
    check_hybrid_weight(request.hybrid_weight, request.text.is_some())?;
    match (request.text, request.image_url, request.image_id) {
        (Some(_), None, None) if request.hybrid_weight.is_some_and(|w| w > 0.0) => Ok(Route::Origin),
        (Some(text), None, None) => {
            check_query_text(&text, limits.max_text_bytes)?;
            Ok(Route::Edge { text, options })
        }
        (None, Some(_), None) | (None, None, Some(_)) => Ok(Route::Origin),
        _ => Err(RequestError::invalid("give exactly one of `text`, `image_url`, `image_id`")),
    }
}

/// Most texts in one edge `/v1/embeddings` call (each runs the text tower; the origin takes 256).
pub const MAX_EMBEDDING_TEXTS: usize = 32;

/// The texts of an OpenAI-shaped embeddings request the edge answers itself: `input` a string or an
/// array of strings. `None` when the request holds images (the origin embeds those), or names a model
/// (`Some(model)` in the second place: the caller checks it against the loaded one).
///
/// # Errors
/// The server's errors for the same body.
#[allow(clippy::type_complexity)]
pub fn embedding_texts(body: &[u8], limits: &Limits) -> Result<Option<(Vec<String>, Option<String>)>, RequestError> {
    use lens_core::api::EmbeddingsRequest;
    use serde_json::Value;
    let request: EmbeddingsRequest = parse_body(body, limits, "an embeddings request")?;
    if request.encoding_format.as_deref().is_some_and(|f| f != "float") {
        return Err(RequestError::invalid("only encoding_format \"float\" is supported"));
    }
    let items = match request.input {
        Value::String(s) => vec![Value::String(s)],
        Value::Array(items) => items,
        _ => return Err(RequestError::invalid("`input` must be a string or an array")),
    };
    if items.iter().any(|i| !i.is_string()) {
        return Ok(None);
    }
    if items.is_empty() || items.len() > MAX_EMBEDDING_TEXTS {
        return Err(RequestError::invalid(format!("`input` must have 1 to {MAX_EMBEDDING_TEXTS} texts at the edge")));
    }
    let texts: Vec<String> = items.into_iter().filter_map(|i| i.as_str().map(str::to_string)).collect();
    for text in &texts {
        check_query_text(text, limits.max_text_bytes)?;
    }
    Ok(Some((texts, request.model)))
}

/// The best `k` of every shard's hits: by score, then by id (the server's order for ties), at or above
/// the threshold.
#[derive(Debug)]
pub struct Ranking {
    options: SearchOptions,
    best: Vec<SearchResult>,
}

impl Ranking {
    pub fn new(options: SearchOptions) -> Self {
        Self { best: Vec::with_capacity(options.k * 2), options }
    }

    /// Takes one shard's hits (each shard's own best `k`).
    pub fn offer(&mut self, hits: impl IntoIterator<Item = SearchResult>) {
        let threshold = self.options.threshold.unwrap_or(f32::NEG_INFINITY);
        self.best.extend(hits.into_iter().filter(|r| r.score >= threshold));
        self.best.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        self.best.truncate(self.options.k);
    }

    pub fn finish(self) -> Vec<SearchResult> {
        self.best
    }
}

/// The edge's answer: the server's shape, plus who answered and with which model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeSearchResponse {
    #[serde(flatten)]
    pub response: SearchResponse,
    /// `edge`: answered by the Worker, from its own model and index.
    pub served_by: String,
    /// The model the query was embedded with (the index's).
    pub model: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lens_core::api::ErrorCode;

    fn result(id: &str, score: f32) -> SearchResult {
        crate::index::Record {
            id: id.into(),
            sha256: String::new(),
            mime: String::new(),
            width: 1,
            height: 1,
            bytes: 1,
            created_at: 0,
            tags: vec![],
            caption: None,
            analysis: None,
        }
        .result(score)
    }

    #[test]
    fn texts_stay_image_and_hybrid_queries_go_to_the_origin() {
        let l = Limits::default();
        let Route::Edge { text, options } = route(br#"{"text":"a cat","k":3,"threshold":0.1}"#, &l).unwrap() else {
            panic!("text stays at the edge")
        };
        assert_eq!((text.as_str(), options.k, options.threshold), ("a cat", 3, Some(0.1)));
        assert!(matches!(route(br#"{"text":"a cat","hybrid_weight":0}"#, &l), Ok(Route::Edge { .. })));
        assert_eq!(route(br#"{"text":"a cat","hybrid_weight":0.5}"#, &l).unwrap(), Route::Origin);
        assert_eq!(route(br#"{"image_id":"ab"}"#, &l).unwrap(), Route::Origin);
        assert_eq!(route(br#"{"image_url":"https://x.test/a.png"}"#, &l).unwrap(), Route::Origin);

        let code = |body: &[u8]| route(body, &l).unwrap_err().code;
        assert_eq!(code(b"{"), ErrorCode::InvalidJson);
        assert_eq!(code(br#"{"text":"a","extra":1}"#), ErrorCode::InvalidRequest);
        assert_eq!(code(br#"{"text":"a","k":0}"#), ErrorCode::InvalidRequest);
        assert_eq!(code(br#"{"text":"a","k":1001}"#), ErrorCode::InvalidRequest);
        assert_eq!(code(br#"{"text":"a","threshold":2}"#), ErrorCode::InvalidRequest);
        assert_eq!(code(br#"{"text":"a","image_id":"b"}"#), ErrorCode::InvalidRequest);
        assert_eq!(code(br#"{}"#), ErrorCode::InvalidRequest);
        let long = format!(r#"{{"text":"{}"}}"#, "a".repeat(2001));
        assert_eq!(code(long.as_bytes()), ErrorCode::TooLarge);
        assert_eq!(code(&vec![b' '; 70_000]), ErrorCode::TooLarge);
    }

    #[test]
    fn text_embeddings_stay_image_ones_go() {
        let l = Limits::default();
        let (texts, model) = embedding_texts(br#"{"input":["a","b"],"model":"m"}"#, &l).unwrap().unwrap();
        assert_eq!((texts, model.as_deref()), (vec!["a".to_string(), "b".to_string()], Some("m")));
        assert_eq!(embedding_texts(br#"{"input":"a"}"#, &l).unwrap().unwrap().0, ["a"]);
        assert!(embedding_texts(br#"{"input":["a",{"image_id":"x"}]}"#, &l).unwrap().is_none());
        assert!(embedding_texts(br#"{"input":[]}"#, &l).is_err());
        assert!(embedding_texts(br#"{"input":" "}"#, &l).is_err());
        assert!(embedding_texts(br#"{"input":"a","encoding_format":"base64"}"#, &l).is_err());
        assert!(embedding_texts(br#"{"input":3}"#, &l).is_err());
    }

    #[test]
    fn shards_merge_by_score_then_id_above_the_threshold() {
        let Route::Edge { options, .. } = route(br#"{"text":"x","k":3,"threshold":0.2}"#, &Limits::default()).unwrap()
        else {
            panic!()
        };
        let mut ranking = Ranking::new(options);
        ranking.offer([result("b", 0.9), result("d", 0.1)]);
        ranking.offer([result("a", 0.9), result("c", 0.5), result("e", 0.3)]);
        let ids: Vec<String> = ranking.finish().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
