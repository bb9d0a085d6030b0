//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes and lens-core's
//! wire types (their `openapi` feature), served at `/v1/openapi.json` and printed by `lens openapi`.

use axum::Json;
use utoipa::OpenApi;

use super::{analysis, captions, chat, history, images, jobs, knowledge, search, sync, system};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lens",
        description = "Image ingest, BLIP captions, image analysis by a LLaVA, hybrid CLIP + text search and \
OpenAI-compatible chat about images. Errors are {\"error\": {\"code\", \"message\", \"type\", \"param\"}} with the status the code \
calls for."
    ),
    paths(
        images::create,
        images::list,
        images::get,
        images::delete,
        images::blob,
        images::thumbnail,
        images::duplicates,
        search::search,
        search::search_image,
        search::embeddings,
        captions::create,
        chat::create,
        analysis::create,
        history::list,
        history::get,
        history::delete,
        history::delete_user,
        knowledge::add_documents,
        knowledge::list,
        knowledge::get,
        knowledge::delete,
        knowledge::delete_document,
        knowledge::search,
        jobs::create_ingest,
        jobs::create_rebuild,
        jobs::list,
        jobs::get,
        sync::feed,
        system::models,
        system::healthz,
        system::readyz,
        system::metrics,
    ),
    tags(
        (name = "images", description = "Ingest, list, read and delete images"),
        (name = "search", description = "Search by text or image, near-duplicates, embeddings"),
        (name = "captions", description = "BLIP captions"),
        (name = "chat", description = "Chat completions (OpenAI's API) with a LLaMA or LLaVA, image analysis, the history"),
        (name = "jobs", description = "Batch URL ingest, index rebuilds, caption and analysis jobs"),
        (name = "knowledge", description = "The knowledge base: collections of documents, searched and given to chat"),
        (name = "sync", description = "The change feed a browser mirror pulls"),
        (name = "system", description = "Health, readiness, models, metrics"),
    )
)]
pub struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// `GET /v1/openapi.json`
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
