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
calls for. With authentication on (the default off loopback), every route but /healthz, /readyz and \
/v1/openapi.json needs an API key (`Authorization: Bearer KEY` or `X-Api-Key`): 401 unauthorized without one, 403 \
forbidden when its scope is too small, 429 rate_limited (with Retry-After) over its rate."
    ),
    modifiers(&ApiKeys),
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

/// The API key schemes (bearer or `X-Api-Key`), required by default on every operation; the public ones say so.
struct ApiKeys;

impl utoipa::Modify for ApiKeys {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("lens_…").build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))));
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
        for (path, item) in doc.paths.paths.iter_mut() {
            if matches!(path.as_str(), "/healthz" | "/readyz") {
                for op in [&mut item.get, &mut item.head].into_iter().flatten() {
                    op.security = Some(vec![SecurityRequirement::default()]);
                }
            }
        }
    }
}

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
