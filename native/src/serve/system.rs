//! `/healthz`, `/readyz`, `/v1/models`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lens_core::api::{ErrorBody, Health, IndexInfo, ModelCard, ModelList, ModelTask, Ready};

use super::error::{ApiError, ApiResult};
use crate::runtime::{ModelInfo, Role};
use crate::services::{Lens, NotReady};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "system", responses((status = 200, description = "the process is up", body = Health)))]
pub async fn healthz(State(lens): State<Arc<Lens>>) -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into(), uptime_s: lens.started.elapsed().as_secs() })
}

/// Readiness: the models are loaded and the index built.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "system",
    responses((status = 200, description = "models loaded, index built", body = Ready), (status = 503, description = "loading (not_ready)", body = ErrorBody)))]
pub async fn readyz(State(lens): State<Arc<Lens>>) -> ApiResult<axum::Json<Ready>> {
    let ready = lens.ready().map_err(ApiError::from)?;
    Ok(axum::Json(Ready {
        status: "ready".into(),
        model: ready.models.embedding_model().to_string(),
        caption_model: ready.models.info(Role::Captioner).map(|i| i.id().to_string()),
        index: IndexInfo { kind: ready.index.kind().into(), vectors: ready.index.len() },
    }))
}

/// The loaded models: the embedding model (with its index and blob store) first, then the caption
/// model (with the options caption jobs use), then the chat model.
#[utoipa::path(get, path = "/v1/models", operation_id = "list_models", tag = "system",
    responses((status = 200, description = "the loaded models", body = ModelList), (status = 503, description = "models loading, the model queue full, or captioning disabled", body = ErrorBody)))]
pub async fn models(State(lens): State<Arc<Lens>>) -> ApiResult<axum::Json<ModelList>> {
    let ready = lens.ready().map_err(|e: NotReady| ApiError::from(e))?;
    let data = ready
        .models
        .infos()
        .map(|info| {
            let mut card = card(info);
            match info.role {
                Role::Embedder => {
                    card.index = Some(IndexInfo { kind: ready.index.kind().into(), vectors: ready.index.len() });
                    card.blob_store = Some(lens.blobs.describe());
                }
                Role::Captioner => card.defaults = lens.caption_job_options(),
                Role::Chat | Role::TextEmbedder => {}
            }
            card
        })
        .collect();
    Ok(axum::Json(ModelList { object: "list".into(), data }))
}

fn card(info: &ModelInfo) -> ModelCard {
    ModelCard {
        id: info.identity.id.clone(),
        object: "model".into(),
        task: match info.role {
            Role::Embedder => ModelTask::Embedding,
            Role::Captioner => ModelTask::Captioning,
            Role::Chat => ModelTask::Chat,
            Role::TextEmbedder => ModelTask::TextEmbedding,
        },
        name: info.identity.name.clone(),
        revision: info.identity.revision.clone(),
        backend: info.backend.into(),
        device: info.device.clone(),
        image_size: info.image_size,
        dims: info.dims,
        max_text_tokens: info.max_text_tokens,
        index: None,
        blob_store: None,
        defaults: None,
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "system",
    responses((status = 200, description = "text exposition format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(lens): State<Arc<Lens>>) -> Response {
    if let Ok(n) = lens.catalog(|c| c.count_images()).await {
        metrics::gauge!("lens_catalog_images").set(n as f64);
    }
    for kind in [lens_store::CAPTION_JOB, lens_store::ANALYSIS_JOB] {
        if let Ok(counts) = lens.catalog(move |c| c.count_jobs(kind)).await {
            for (job_state, n) in counts {
                metrics::gauge!(format!("lens_{kind}_jobs"), "state" => job_state.as_str()).set(n as f64);
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::prometheus().render()).into_response()
}
