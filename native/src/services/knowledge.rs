//! The knowledge base: named collections of text documents (JSON, JSON Lines or CSV uploads), cut into
//! overlapping chunks of words, embedded by the sentence embedder (`--text-model`) when there is one, and
//! searched by the same text score as image captions: bm25 of the query's words blended with the cosine of
//! the sentence embeddings (lens-core's [`rank_texts`]). A chat request's `lens` field retrieves passages for
//! its last user message ([`retrieve`]).
//!
//! Candidates are the keyword top N and the embedding top N of each collection (N = max(4k, 50)); a chunk
//! found only by its embedding counts no keyword score even if a word of it matches further down the list.

use std::collections::HashMap;

use bytes::Bytes;
use lens_core::api::{self, ErrorCode, RequestError};
use lens_core::documents::{DocumentFormat, check_collection_name, chunk_text, parse_documents};
use lens_core::limits::check_query_text;
use lens_core::ranking::{TextCandidate, rank_texts, semantic_score};
use lens_store::{NewDocument, StoreError};

use super::caller::Caller;
use super::errors::{NotReady, coded_enum};
use super::lens::Lens;
use crate::runtime::ModelError;

/// Most results of one search.
pub const MAX_K: usize = 50;
/// Most collections one chat request retrieves from, and most passages it gets.
pub const MAX_CHAT_COLLECTIONS: usize = 8;
pub const MAX_CHAT_PASSAGES: usize = 16;
/// Chunks embedded per model call (an upload of many goes in several, so other requests get a turn).
const EMBED_BATCH: usize = 64;

/// Why a knowledge-base request failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Invalid(#[from] RequestError),
    #[error(transparent)]
    NotReady(#[from] NotReady),
    #[error("no collection `{0}`")]
    NoCollection(String),
    #[error("no document `{document}` in collection `{collection}`")]
    NoDocument { collection: String, document: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

coded_enum!(KnowledgeError {
    wraps: [Invalid, NotReady, Model, Store],
    own: [
        KnowledgeError::NoCollection(_) => ErrorCode::NotFound,
        KnowledgeError::NoDocument { .. } => ErrorCode::NotFound,
    ]
});

/// `POST /v1/collections/{name}/documents`: parses, chunks, embeds and stores an upload, all or nothing.
pub async fn add_documents(
    lens: &Lens,
    caller: &Caller,
    collection: &str,
    format: DocumentFormat,
    body: Bytes,
) -> Result<api::DocumentsAdded, KnowledgeError> {
    check_collection_name(collection)?;
    let ready = lens.ready()?;
    let (words, overlap) = (lens.config.knowledge.chunk_words, lens.config.knowledge.chunk_overlap);
    let parsed = tokio::task::spawn_blocking(move || {
        let documents = parse_documents(&body, format)?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(documents.len());
        for (i, d) in documents.into_iter().enumerate() {
            let id = d.id.clone().unwrap_or_else(|| {
                lens_core::ids::public_id(&lens_core::ids::sha256_hex(d.text.as_bytes())).to_string()
            });
            if !seen.insert(id.clone()) {
                return Err(RequestError::invalid(format!(
                    "document {}: id `{id}` appears twice in the upload",
                    i + 1
                )));
            }
            let chunks = chunk_text(&d.text, words, overlap);
            out.push((id, d, chunks));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ModelError::Panicked(e.to_string()))??;

    let embedder = ready.models.text_embedder();
    let all_chunks: Vec<String> = parsed.iter().flat_map(|(_, _, chunks)| chunks.iter().cloned()).collect();
    let mut vectors = Vec::with_capacity(if embedder.is_some() { all_chunks.len() } else { 0 });
    if let Some(embedder) = embedder {
        for batch in all_chunks.chunks(EMBED_BATCH) {
            vectors.extend(embedder.model.embed(batch.to_vec(), true).await?);
        }
    }
    let model = embedder.map(|e| e.info.id().to_string());
    let name = collection.to_string();
    let ids: Vec<String> = parsed.iter().map(|(id, _, _)| id.clone()).collect();
    let stored_model = model.clone();
    let owner = caller.owner().map(str::to_string);
    let chunks = lens
        .catalog(move |c| {
            let metadata: Vec<Option<serde_json::Value>> =
                parsed.iter().map(|(_, d, _)| d.metadata.clone().map(serde_json::Value::Object)).collect();
            let mut offset = 0;
            let mut documents = Vec::with_capacity(parsed.len());
            for ((id, d, chunks), metadata) in parsed.iter().zip(&metadata) {
                let embeddings = if vectors.is_empty() { &[][..] } else { &vectors[offset..offset + chunks.len()] };
                offset += chunks.len();
                documents.push(NewDocument {
                    id,
                    title: d.title.as_deref(),
                    text: &d.text,
                    metadata: metadata.as_ref(),
                    chunks,
                    embeddings,
                });
            }
            c.add_documents(&name, &documents, stored_model.as_deref(), owner.as_deref())
        })
        .await?;
    metrics::counter!("lens_kb_chunks_added_total").increment(chunks);
    Ok(api::DocumentsAdded { collection: collection.to_string(), ids, chunks, embedder: model })
}

/// `GET /v1/collections`
pub async fn list(lens: &Lens, caller: &Caller) -> Result<api::CollectionList, KnowledgeError> {
    let who = caller.clone();
    Ok(api::CollectionList { collections: lens.catalog(move |c| c.list_collections(who.visible())).await? })
}

/// `GET /v1/collections/{name}`
pub async fn get(lens: &Lens, caller: &Caller, name: &str) -> Result<api::CollectionInfo, KnowledgeError> {
    check_collection_name(name)?;
    let (lookup, who) = (name.to_string(), caller.clone());
    lens.catalog(move |c| c.collection(&lookup, who.visible()))
        .await?
        .ok_or_else(|| KnowledgeError::NoCollection(name.into()))
}

/// `DELETE /v1/collections/{name}`: the collection and its documents.
pub async fn delete(lens: &Lens, caller: &Caller, name: &str) -> Result<(), KnowledgeError> {
    check_collection_name(name)?;
    let (lookup, who) = (name.to_string(), caller.clone());
    if lens.catalog(move |c| c.delete_collection(&lookup, who.visible())).await? {
        Ok(())
    } else {
        Err(KnowledgeError::NoCollection(name.into()))
    }
}

/// `DELETE /v1/collections/{name}/documents/{id}`
pub async fn delete_document(lens: &Lens, caller: &Caller, name: &str, id: &str) -> Result<(), KnowledgeError> {
    check_collection_name(name)?;
    let (collection, document) = (name.to_string(), id.to_string());
    let (c2, d2, who) = (collection.clone(), document.clone(), caller.clone());
    if lens.catalog(move |c| c.delete_document(&c2, &d2, who.visible())).await? {
        Ok(())
    } else {
        Err(KnowledgeError::NoDocument { collection, document })
    }
}

/// `POST /v1/collections/{name}/search`
pub async fn search(
    lens: &Lens,
    caller: &Caller,
    name: &str,
    request: api::CollectionSearchRequest,
) -> Result<api::CollectionSearchResponse, KnowledgeError> {
    let k = request.k.unwrap_or(5);
    if !(1..=MAX_K).contains(&k) {
        return Err(RequestError::invalid(format!("k must be between 1 and {MAX_K}")).into());
    }
    let results = retrieve(lens, caller, &[name.to_string()], &request.query, k).await?;
    Ok(api::CollectionSearchResponse { results })
}

/// The best `k` passages of `collections` for `query` (every collection must exist).
pub async fn retrieve(
    lens: &Lens,
    caller: &Caller,
    collections: &[String],
    query: &str,
    k: usize,
) -> Result<Vec<api::Passage>, KnowledgeError> {
    check_query_text(query, lens.config.max_text_bytes)?;
    for name in collections {
        check_collection_name(name)?;
        let (lookup, who) = (name.clone(), caller.clone());
        if !lens.catalog(move |c| c.has_collection(&lookup, who.visible())).await? {
            return Err(KnowledgeError::NoCollection(name.clone()));
        }
    }
    let ready = lens.ready()?;
    let embedder = ready.models.text_embedder();
    let query_vector = match embedder {
        Some(e) => e.model.embed(vec![query.to_string()], false).await?.pop(),
        None => None,
    };
    let n = (4 * k).max(50);
    let model = embedder.map(|e| e.info.id().to_string());
    let (names, text) = (collections.to_vec(), query.to_string());
    let (keyword, semantic) = lens
        .catalog(move |c| {
            let mut keyword: HashMap<i64, f64> = HashMap::new();
            let mut semantic: HashMap<i64, f32> = HashMap::new();
            for name in &names {
                keyword.extend(c.search_chunks(name, &text, n)?);
                if let (Some(model), Some(q)) = (&model, &query_vector) {
                    let all: HashMap<i64, f32> = c
                        .chunk_embeddings(name, model)?
                        .into_iter()
                        .map(|(key, v)| (key, semantic_score(q, &v)))
                        .collect();
                    let mut best: Vec<(i64, f32)> = all.iter().map(|(k, s)| (*k, *s)).collect();
                    best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    best.truncate(n);
                    semantic.extend(best);
                    // The keyword hits' own similarity too, so both halves are known for them.
                    semantic.extend(keyword.keys().filter_map(|key| all.get(key).map(|s| (*key, *s))));
                }
            }
            Ok((keyword, semantic))
        })
        .await?;
    let embedded = embedder.is_some();
    let mut keys: Vec<i64> = keyword.keys().chain(semantic.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let candidates: Vec<TextCandidate> = keys
        .iter()
        .map(|&key| TextCandidate {
            id: key as u64,
            keyword: keyword.get(&key).copied().unwrap_or(0.0),
            semantic: embedded.then(|| semantic.get(&key).copied().unwrap_or(0.0)),
        })
        .collect();
    let ranked = rank_texts(&candidates, k);
    let wanted: Vec<i64> = ranked.iter().map(|s| s.id as i64).collect();
    let mut records: HashMap<i64, lens_store::ChunkRecord> =
        lens.catalog(move |c| c.chunks_by_keys(&wanted)).await?.into_iter().map(|r| (r.key, r)).collect();
    // A chunk deleted since it was scored is left out.
    Ok(ranked
        .iter()
        .filter_map(|s| {
            let r = records.remove(&(s.id as i64))?;
            Some(api::Passage {
                collection: r.collection,
                document_id: r.document_id,
                title: r.title,
                chunk: r.ordinal,
                text: r.text,
                score: s.score,
                keyword_score: s.keyword_score,
                semantic_score: s.semantic_score,
                metadata: r.metadata,
            })
        })
        .collect())
}

/// The passages a chat request's `lens` field asks for, retrieved for `query` (its last user message).
pub async fn chat_sources(
    lens: &Lens,
    caller: &Caller,
    retrieval: &api::ChatRetrieval,
    query: &str,
) -> Result<Vec<api::Passage>, KnowledgeError> {
    if retrieval.collections.is_empty() || retrieval.collections.len() > MAX_CHAT_COLLECTIONS {
        return Err(RequestError::invalid(format!(
            "`lens.collections` must name 1 to {MAX_CHAT_COLLECTIONS} collections"
        ))
        .into());
    }
    for name in &retrieval.collections {
        check_collection_name(name)?;
    }
    let k = retrieval.top_k.unwrap_or(4);
    if !(1..=MAX_CHAT_PASSAGES).contains(&k) {
        return Err(RequestError::invalid(format!("`lens.top_k` must be between 1 and {MAX_CHAT_PASSAGES}")).into());
    }
    retrieve(lens, caller, &retrieval.collections, query, k).await
}

/// The system turn that gives the model the passages (numbered, with their titles).
pub fn passages_prompt(passages: &[api::Passage]) -> String {
    let mut prompt = String::from(
        "Answer with the help of these passages from the knowledge base when they are relevant, and cite them \
         by number, like [1]. Say so when they do not hold the answer.\n",
    );
    for (i, p) in passages.iter().enumerate() {
        let title = p.title.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
        prompt.push_str(&format!("\n[{}]{title} {}\n", i + 1, p.text));
    }
    prompt
}
