//! Long work as job resources: batch URL ingest, index rebuilds, caption jobs.

use serde::{Deserialize, Serialize};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// A caption job that failed its last attempt (kept with its `last_error`).
    Dead,
    /// Its image was deleted, or captioned by request.
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] =
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Dead, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// No further change will happen.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead | Self::Cancelled)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// `job_` + 16 hex characters.
    pub id: String,
    /// `ingest`, `index_rebuild`, `caption`.
    pub kind: String,
    pub state: JobState,
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    pub error: Option<String>,
    /// caption: `{image, options}`; ingest: `{urls, tags}`.
    pub params: serde_json::Value,
    /// caption: `{caption, cached, model}`; ingest: `{images, errors}`; index_rebuild: `{vectors, seconds}`.
    pub result: serde_json::Value,
    /// How many times the job was started. The catalog's claim returns the count it set, and its
    /// `complete_job` / `fail_attempt` take it back (a fencing token).
    pub attempts: u32,
    /// When a queued job (a retry after back-off) may run, RFC 3339; `null` in other states.
    pub next_run_at: Option<String>,
    /// The error of the latest failed attempt (also kept once a job is `dead`).
    pub last_error: Option<String>,
    /// When the latest attempt started.
    pub started_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /v1/jobs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    pub jobs: Vec<Job>,
}

/// `GET /v1/jobs` query; `?kind=caption&state=dead` is the dead-letter queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// 1 to 1000 (default 50).
    pub limit: Option<usize>,
    /// `ingest`, `index_rebuild`, `caption`.
    pub kind: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `dead`, `cancelled`.
    pub state: Option<String>,
}

/// `POST /v1/ingest`: fetch and ingest URLs as a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IngestJobRequest {
    pub urls: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}
