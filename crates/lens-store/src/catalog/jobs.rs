//! Jobs: long-running work (batch ingest, index rebuild) and the queue of per-image caption and analysis jobs,
//! with leases, attempts as fencing tokens, retries with back-off ([`RetryPolicy`]), a dead-letter
//! state, and what a restart does with the jobs a previous process left behind.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{Catalog, Visible};
use crate::error::{Result, StoreError};
use crate::time::{format_rfc3339_ms, now_ms};

/// The error [`Catalog::fail_interrupted_jobs`] records.
pub const INTERRUPTED_JOB_ERROR: &str = "interrupted: the server stopped before the job finished";

/// The kind of caption jobs: one per image, resumable (a restart puts them back in the queue).
pub const CAPTION_JOB: &str = "caption";

/// The kind of image analysis jobs (the chat model answers a prompt about the image): one per image,
/// resumable.
pub const ANALYSIS_JOB: &str = "analysis";

/// Job kinds a restart re-queues instead of failing: their work is one idempotent step per job,
/// described wholly by the job's params. The others (ingest of a URL list, index rebuild) hold
/// their inputs in memory and cannot resume.
pub const RESUMABLE_JOB_KINDS: &[&str] = &[CAPTION_JOB, ANALYSIS_JOB];

/// Job kinds about one image (the image id is their subject): deleting the image withdraws them.
const IMAGE_JOB_KINDS: &[&str] = &[CAPTION_JOB, ANALYSIS_JOB];

/// A job's state: the API's own type (the catalog stores `as_str`).
pub use lens_core::api::JobState;

fn job_state_from_column(s: &str) -> Result<JobState> {
    JobState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job state {s:?}")))
}

/// A long-running piece of work (batch ingest, index rebuild, caption): the API's own type, so the
/// catalog's rows and the wire agree by construction.
pub use lens_core::api::Job as JobRecord;

/// How failed attempts are retried: after `base_ms * 2^(attempts - 1)`, at most `max_ms`, plus up
/// to 10 % of deterministic jitter (from the job id, so retries of jobs that failed together spread
/// out); after `max_attempts` attempts the job is `dead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_ms: u64,
    pub max_ms: u64,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { base_ms: 2000, max_ms: 3_600_000, max_attempts: 5 }
    }
}

impl RetryPolicy {
    /// The wait before the retry that follows failed attempt number `attempts` (1-based) of `job_id`.
    pub fn delay_ms(&self, job_id: &str, attempts: u32) -> u64 {
        let shift = attempts.saturating_sub(1).min(62);
        let delay = self.base_ms.saturating_mul(1u64 << shift).min(self.max_ms);
        // FNV-1a of the id and the attempt: the same job and attempt always wait the same.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in job_id.bytes().chain(attempts.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let jitter = (delay / 10).saturating_mul(h % 1001) / 1000;
        delay.saturating_add(jitter).min(self.max_ms)
    }
}

/// Filters of [`Catalog::list_jobs_where`].
#[derive(Debug, Clone, Default)]
pub struct JobFilter<'a> {
    pub kind: Option<&'a str>,
    pub state: Option<JobState>,
    /// Only this tenant's jobs.
    pub tenant: Option<&'a str>,
}

impl Catalog {
    /// A new queued job.
    pub fn create_job(&self, kind: &str, total: u64, params: &serde_json::Value) -> Result<JobRecord> {
        self.create_tenant_job(kind, total, params, None)
    }

    /// A new queued job that belongs to `tenant` (see [`JobFilter::tenant`], [`Catalog::visible_job`]).
    pub fn create_tenant_job(
        &self,
        kind: &str,
        total: u64,
        params: &serde_json::Value,
        tenant: Option<&str>,
    ) -> Result<JobRecord> {
        let conn = self.conn();
        let id = insert_job(&conn, kind, None, total, params)?.expect("no subject, no conflict");
        conn.execute("UPDATE jobs SET tenant = ?2 WHERE id = ?1", params![id, tenant])?;
        query_job(&conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))
    }

    /// A new queued job of `kind` unless one of that kind is queued or running: then that one, and `false`.
    /// One transaction, so two callers at once get the same job.
    pub fn create_singleton_job(
        &self,
        kind: &str,
        total: u64,
        params: &serde_json::Value,
    ) -> Result<(JobRecord, bool)> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let running: Option<String> = tx
            .query_row(
                "SELECT id FROM jobs WHERE kind = ?1 AND state IN ('queued', 'running') ORDER BY created_at LIMIT 1",
                params![kind],
                |r| r.get(0),
            )
            .optional()?;
        let (id, created) = match running {
            Some(id) => (id, false),
            None => (insert_job(&tx, kind, None, total, params)?.expect("no subject, no conflict"), true),
        };
        let job = query_job(&tx, &id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
        tx.commit()?;
        Ok((job, created))
    }

    /// The job when `visible` sees it (its tenant's, or any for [`Visible::All`]).
    pub fn visible_job(&self, id: &str, visible: Visible<'_>) -> Result<Option<JobRecord>> {
        let conn = self.conn();
        if let Visible::To(tenant) = visible {
            let theirs: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND tenant = ?2)",
                params![id, tenant],
                |r| r.get(0),
            )?;
            if !theirs {
                return Ok(None);
            }
        }
        query_job(&conn, id)
    }

    /// Queues a job about `subject` (e.g. a caption job about an image id), runnable at once, unless
    /// one of the same kind about the same subject is already queued or running: then `None`.
    pub fn enqueue_job(&self, kind: &str, subject: &str, params: &serde_json::Value) -> Result<Option<JobRecord>> {
        let conn = self.conn();
        match insert_job(&conn, kind, Some(subject), 1, params)? {
            Some(id) => query_job(&conn, &id),
            None => Ok(None),
        }
    }

    /// Atomically takes the oldest runnable job of `kind`: queued with `next_run_at` <= `now_ms`, or
    /// running with its lease past (its worker died without the process dying). It becomes running
    /// with one more attempt, started now, leased until `now_ms + lease_ms`. Two claimers never
    /// get the same attempt of a job.
    pub fn claim_next(&self, kind: &str, now_ms: i64, lease_ms: u64) -> Result<Option<JobRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: Option<String> = tx
            .query_row(
                "SELECT id FROM jobs
                 WHERE kind = ?1 AND ((state = 'queued' AND COALESCE(next_run_at, 0) <= ?2)
                                      OR (state = 'running' AND lease_until IS NOT NULL AND lease_until <= ?2))
                 ORDER BY created_at, rowid LIMIT 1",
                params![kind, now_ms],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Ok(None);
        };
        let lease_until = now_ms.saturating_add(i64::try_from(lease_ms).unwrap_or(i64::MAX));
        tx.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, next_run_at = NULL, started_at = ?2,
                             lease_until = ?3, updated_at = ?2
             WHERE id = ?1",
            params![id, now_ms, lease_until],
        )?;
        let job = query_job(&tx, &id)?;
        tx.commit()?;
        Ok(job)
    }

    /// Ends attempt `attempt` of a claimed job as `succeeded` (or `cancelled`) with `result`. `false`
    /// when that attempt no longer holds the job (cancelled meanwhile, or re-claimed after its lease).
    pub fn complete_job(&self, id: &str, attempt: u32, state: JobState, result: &serde_json::Value) -> Result<bool> {
        if !matches!(state, JobState::Succeeded | JobState::Cancelled) {
            return Err(StoreError::InvalidInput(format!(
                "job {id}: complete_job needs succeeded or cancelled, not {state}"
            )));
        }
        let done = u64::from(state == JobState::Succeeded);
        let n = self.conn().execute(
            "UPDATE jobs SET state = ?3, result = ?4, done = ?5, next_run_at = NULL, lease_until = NULL,
                             updated_at = ?6
             WHERE id = ?1 AND attempts = ?2 AND state = 'running'",
            params![id, attempt, state.as_str(), result.to_string(), to_i64(done)?, now_ms()],
        )?;
        Ok(n > 0)
    }

    /// Records that attempt `attempt` of a claimed job failed with `error`: back to queued, to run
    /// again at `now_ms` + [`RetryPolicy::delay_ms`], or — the attempt being the policy's last —
    /// `dead`, keeping the error. Returns the new state; `None` when that attempt no longer holds the job.
    pub fn fail_attempt(
        &self,
        id: &str,
        attempt: u32,
        error: &str,
        now_ms: i64,
        policy: &RetryPolicy,
    ) -> Result<Option<JobState>> {
        let error = truncate_chars(error, 2000);
        let conn = self.conn();
        let n = if attempt >= policy.max_attempts {
            conn.execute(
                "UPDATE jobs SET state = 'dead', error = ?3, last_error = ?3, failed = 1, next_run_at = NULL,
                                 lease_until = NULL, updated_at = ?4
                 WHERE id = ?1 AND attempts = ?2 AND state = 'running'",
                params![id, attempt, error, now_ms],
            )?
        } else {
            let delay = i64::try_from(policy.delay_ms(id, attempt)).unwrap_or(i64::MAX);
            conn.execute(
                "UPDATE jobs SET state = 'queued', last_error = ?3, next_run_at = ?4, lease_until = NULL,
                                 updated_at = ?5
                 WHERE id = ?1 AND attempts = ?2 AND state = 'running'",
                params![id, attempt, error, now_ms.saturating_add(delay), now_ms],
            )?
        };
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(if attempt >= policy.max_attempts { JobState::Dead } else { JobState::Queued }))
    }

    /// Cancels the queued jobs of `kind` about `subject` (running ones finish); how many.
    pub fn cancel_queued_jobs(&self, kind: &str, subject: &str, reason: &str) -> Result<u64> {
        let n = self.conn().execute(
            "UPDATE jobs SET state = 'cancelled', result = ?3, next_run_at = NULL, updated_at = ?4
             WHERE kind = ?1 AND subject = ?2 AND state = 'queued'",
            params![kind, subject, serde_json::json!({"reason": reason}).to_string(), now_ms()],
        )?;
        Ok(n as u64)
    }

    /// When the next job of `kind` becomes claimable (ms): the earliest `next_run_at` of a queued job
    /// or lease end of a running one; `None` when there is none.
    pub fn next_job_due(&self, kind: &str) -> Result<Option<i64>> {
        Ok(self.conn().query_row(
            "SELECT MIN(CASE state WHEN 'queued' THEN COALESCE(next_run_at, 0) ELSE lease_until END)
             FROM jobs WHERE kind = ?1 AND (state = 'queued' OR (state = 'running' AND lease_until IS NOT NULL))",
            params![kind],
            |r| r.get(0),
        )?)
    }

    /// How many jobs of `kind` are in each state (every state listed, zeros included).
    pub fn count_jobs(&self, kind: &str) -> Result<Vec<(JobState, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM jobs WHERE kind = ?1 GROUP BY state")?;
        let rows: Vec<(String, i64)> =
            stmt.query_map(params![kind], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        JobState::ALL
            .into_iter()
            .map(|state| {
                let n = rows.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
                Ok((state, n.max(0) as u64))
            })
            .collect()
    }

    /// Queued -> running (counts an attempt). Any other state is [`StoreError::InvalidInput`].
    pub fn start_job(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, next_run_at = NULL,
                             started_at = ?2, updated_at = ?2
             WHERE id = ?1 AND state = 'queued'",
            params![id, now_ms()],
        )?;
        if n == 0 {
            let state: Option<String> =
                conn.query_row("SELECT state FROM jobs WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
            return Err(match state {
                None => StoreError::NotFound(format!("job {id}")),
                Some(state) => StoreError::InvalidInput(format!("job {id} is {state}: only a queued job can start")),
            });
        }
        Ok(())
    }

    /// Records progress: `done` items processed so far, `failed` of them failed.
    pub fn job_progress(&self, id: &str, done: u64, failed: u64) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE jobs SET done = ?2, failed = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, to_i64(done)?, to_i64(failed)?, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("job {id}")));
        }
        Ok(())
    }

    /// Ends the job: `state` must be succeeded or failed.
    pub fn finish_job(&self, id: &str, state: JobState, error: Option<&str>, result: &serde_json::Value) -> Result<()> {
        if !state.is_finished() {
            return Err(StoreError::InvalidInput(format!(
                "job {id}: finish_job needs succeeded or failed, not {state}"
            )));
        }
        let n = self.conn().execute(
            "UPDATE jobs SET state = ?2, error = ?3, last_error = COALESCE(?3, last_error),
                             result = ?4, next_run_at = NULL, updated_at = ?5
             WHERE id = ?1",
            params![id, state.as_str(), error, result.to_string(), now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("job {id}")));
        }
        Ok(())
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        query_job(&self.conn(), id)
    }

    /// The `limit` newest jobs, newest first.
    pub fn list_jobs(&self, limit: usize) -> Result<Vec<JobRecord>> {
        self.list_jobs_where(limit, &JobFilter::default())
    }

    /// The `limit` newest jobs that pass `filter`, newest first.
    pub fn list_jobs_where(&self, limit: usize, filter: &JobFilter<'_>) -> Result<Vec<JobRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2)
               AND (?4 IS NULL OR tenant = ?4)
             ORDER BY created_at DESC, rowid DESC LIMIT ?3"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let args = params![filter.kind, filter.state.map(JobState::as_str), limit, filter.tenant];
        let rows = stmt.query_map(args, RawJob::from_row)?;
        rows.map(|r| r?.into_record()).collect()
    }

    /// At start-up: jobs of the kinds that cannot resume (not in [`RESUMABLE_JOB_KINDS`]) that a
    /// previous process left queued or running become failed with [`INTERRUPTED_JOB_ERROR`];
    /// returns how many. Resumable jobs are left alone (see [`Catalog::requeue_interrupted_jobs`]).
    pub fn fail_interrupted_jobs(&self) -> Result<u64> {
        let kinds = serde_json::to_string(RESUMABLE_JOB_KINDS).expect("strings serialize");
        let n = self.conn().execute(
            "UPDATE jobs SET state = 'failed', error = ?1, last_error = ?1, next_run_at = NULL, lease_until = NULL,
                             updated_at = ?2
             WHERE state IN ('queued', 'running') AND kind NOT IN (SELECT value FROM json_each(?3))",
            params![INTERRUPTED_JOB_ERROR, now_ms(), kinds],
        )?;
        Ok(n as u64)
    }

    /// At start-up: jobs of `kind` a previous process left running go back to queued, runnable at
    /// once, keeping their attempt count — except those that already used `max_attempts` (a job
    /// that keeps killing the process), which become `dead` with [`INTERRUPTED_JOB_ERROR`].
    /// Returns (re-queued, dead).
    pub fn requeue_interrupted_jobs(&self, kind: &str, max_attempts: u32) -> Result<(u64, u64)> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let dead = tx.execute(
            "UPDATE jobs SET state = 'dead', error = ?3, last_error = ?3, failed = 1, lease_until = NULL,
                             updated_at = ?4
             WHERE kind = ?1 AND state = 'running' AND attempts >= ?2",
            params![kind, max_attempts, INTERRUPTED_JOB_ERROR, now],
        )?;
        let requeued = tx.execute(
            "UPDATE jobs SET state = 'queued', last_error = ?2, next_run_at = NULL, lease_until = NULL, updated_at = ?3
             WHERE kind = ?1 AND state = 'running'",
            params![kind, INTERRUPTED_JOB_ERROR, now],
        )?;
        tx.commit()?;
        Ok((requeued as u64, dead as u64))
    }
}

// --- rows -----------------------------------------------------------------------------------------

const JOB_COLUMNS: &str = "id, kind, state, total, done, failed, error, params, result, attempts, created_at, \
                           updated_at, next_run_at, last_error, started_at";

struct RawJob {
    id: String,
    kind: String,
    state: String,
    counts: [i64; 3],
    error: Option<String>,
    params: String,
    result: String,
    attempts: u32,
    created_ms: i64,
    updated_ms: i64,
    next_run_ms: Option<i64>,
    last_error: Option<String>,
    started_ms: Option<i64>,
}

impl RawJob {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawJob {
            id: r.get(0)?,
            kind: r.get(1)?,
            state: r.get(2)?,
            counts: [r.get(3)?, r.get(4)?, r.get(5)?],
            error: r.get(6)?,
            params: r.get(7)?,
            result: r.get(8)?,
            attempts: r.get(9)?,
            created_ms: r.get(10)?,
            updated_ms: r.get(11)?,
            next_run_ms: r.get(12)?,
            last_error: r.get(13)?,
            started_ms: r.get(14)?,
        })
    }

    fn into_record(self) -> Result<JobRecord> {
        let json = |what: &str, text: &str| {
            serde_json::from_str(text)
                .map_err(|e| StoreError::Corrupt(format!("job {}: {what} is not JSON: {e}", self.id)))
        };
        let [total, done, failed] = self.counts.map(|n| n.max(0) as u64);
        let state = job_state_from_column(&self.state)?;
        Ok(JobRecord {
            state,
            params: json("params", &self.params)?,
            result: json("result", &self.result)?,
            total,
            done,
            failed,
            error: self.error.clone(),
            attempts: self.attempts,
            next_run_at: if state == JobState::Queued {
                Some(format_rfc3339_ms(self.next_run_ms.unwrap_or(self.created_ms)))
            } else {
                None
            },
            last_error: self.last_error.clone(),
            started_at: self.started_ms.map(format_rfc3339_ms),
            created_at: format_rfc3339_ms(self.created_ms),
            updated_at: format_rfc3339_ms(self.updated_ms),
            kind: self.kind.clone(),
            id: self.id.clone(),
        })
    }
}

fn query_job(conn: &Connection, id: &str) -> Result<Option<JobRecord>> {
    let raw = conn
        .query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), params![id], RawJob::from_row)
        .optional()?;
    raw.map(RawJob::into_record).transpose()
}

// --- helpers --------------------------------------------------------------------------------------

/// Inserts a queued job; `None` when `subject` already has a pending job of `kind`.
pub(super) fn insert_job(
    conn: &Connection,
    kind: &str,
    subject: Option<&str>,
    total: u64,
    params: &serde_json::Value,
) -> Result<Option<String>> {
    if kind.is_empty() || kind.len() > 64 {
        return Err(StoreError::InvalidInput(format!("job kind {kind:?} must be 1 to 64 bytes")));
    }
    let id = format!("job_{:016x}", rand::random::<u64>());
    let now = now_ms();
    let n = conn.execute(
        "INSERT OR IGNORE INTO jobs (id, kind, state, total, params, subject, next_run_at, created_at, updated_at)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?6, ?6)",
        params![id, kind, to_i64(total)?, params.to_string(), subject, now],
    )?;
    Ok((n > 0).then_some(id))
}

/// The caption and analysis jobs of a deleted image: queued ones are removed (never started, nothing
/// to keep: a rolled-back upload leaves no trace), a running one is cancelled (its worker's completion
/// is then refused) — the image is gone, so none of them ends dead.
pub(super) fn withdraw_image_jobs(tx: &Transaction<'_>, image_id: &str, reason: &str) -> Result<()> {
    let result = serde_json::json!({"reason": reason}).to_string();
    for kind in IMAGE_JOB_KINDS {
        tx.execute(
            "DELETE FROM jobs WHERE kind = ?1 AND subject = ?2 AND state = 'queued' AND attempts = 0",
            params![kind, image_id],
        )?;
        tx.execute(
            "UPDATE jobs SET state = 'cancelled', result = ?3, next_run_at = NULL, lease_until = NULL, updated_at = ?4
             WHERE kind = ?1 AND subject = ?2 AND state IN ('queued', 'running')",
            params![kind, image_id, result, now_ms()],
        )?;
    }
    Ok(())
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// A caption job's params: the image and the caption options.
pub fn caption_job_params(image_id: &str, options: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"image": image_id, "options": options})
}

/// An analysis job's params: the image and the prompt.
pub fn analysis_job_params(image_id: &str, prompt: &str) -> serde_json::Value {
    serde_json::json!({"image": image_id, "prompt": prompt})
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::InvalidInput(format!("count {n} too large")))
}
