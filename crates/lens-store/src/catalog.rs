//! The catalog: images, their embeddings and jobs in embedded SQLite.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a transaction that returned `Ok` survives
//! kill -9 and power loss. One connection behind a mutex: every method is a short critical section
//! (the server calls them from `spawn_blocking`); long scans ([`Catalog::for_each_embedding`]) take
//! the lock chunk by chunk so writers are never held up for long.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::time::{format_rfc3339_ms, now_ms};

/// The schema version this build writes (`PRAGMA user_version`); the number of migration steps.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// `PRAGMA application_id` of a Lens catalog ("LENS"), so that another SQLite file is refused.
const APPLICATION_ID: i32 = 0x4c45_4e53;

/// The error [`Catalog::fail_interrupted_jobs`] records.
pub const INTERRUPTED_JOB_ERROR: &str = "interrupted: the server stopped before the job finished";

/// Ordered migration steps: step `i` takes the schema from version `i` to `i + 1`. Append only;
/// never edit a step that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: images, tags, embeddings, generation counter, jobs.
    r#"
    CREATE TABLE images (
        key         INTEGER PRIMARY KEY AUTOINCREMENT, -- the vector index id; never reused
        id          TEXT    NOT NULL UNIQUE,           -- first 32 hex chars of sha256
        sha256      TEXT    NOT NULL UNIQUE,
        mime        TEXT    NOT NULL,
        width       INTEGER NOT NULL,
        height      INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        source_url  TEXT,
        created_at  INTEGER NOT NULL,                  -- ms since the Unix epoch, UTC
        tags        TEXT    NOT NULL DEFAULT '[]',     -- JSON array, in the order given
        caption     TEXT
    );
    CREATE INDEX images_newest ON images (created_at DESC, key DESC);

    -- The tag filter's index; kept equal to images.tags in the same transactions.
    CREATE TABLE image_tags (
        tag         TEXT    NOT NULL,
        image_key   INTEGER NOT NULL REFERENCES images (key) ON DELETE CASCADE,
        PRIMARY KEY (tag, image_key)
    ) WITHOUT ROWID;
    CREATE INDEX image_tags_by_image ON image_tags (image_key);

    CREATE TABLE embeddings (
        image_key   INTEGER NOT NULL REFERENCES images (key) ON DELETE CASCADE,
        model       TEXT    NOT NULL,
        dim         INTEGER NOT NULL,
        vector      BLOB    NOT NULL,                  -- dim little-endian f32
        PRIMARY KEY (image_key, model)
    );
    CREATE INDEX embeddings_by_model ON embeddings (model, image_key);

    CREATE TABLE meta (
        name        TEXT PRIMARY KEY,
        value       INTEGER NOT NULL
    );
    INSERT INTO meta (name, value) VALUES ('generation', 0);

    CREATE TABLE jobs (
        id          TEXT    PRIMARY KEY,
        kind        TEXT    NOT NULL,
        state       TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
        total       INTEGER NOT NULL DEFAULT 0,
        done        INTEGER NOT NULL DEFAULT 0,
        failed      INTEGER NOT NULL DEFAULT 0,
        error       TEXT,
        params      TEXT    NOT NULL DEFAULT 'null',   -- JSON
        result      TEXT    NOT NULL DEFAULT 'null',   -- JSON
        attempts    INTEGER NOT NULL DEFAULT 0,        -- times started (retries)
        next_run_at INTEGER,                           -- ms; a queued retry waits until then
        last_error  TEXT,                              -- error of the latest failed attempt
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX jobs_newest ON jobs (created_at DESC);
    CREATE INDEX jobs_runnable ON jobs (state, next_run_at);
    "#,
];

/// An image to insert.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// Lowercase hex sha256 of the bytes (64 characters).
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub source_url: Option<String>,
    /// Stored in this order, duplicates dropped.
    pub tags: Vec<String>,
}

/// An image in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    /// INTEGER PRIMARY KEY; the vector index id. Never reused after a delete.
    #[serde(skip)]
    pub key: i64,
    /// Public id: the first 32 hex characters of sha256 (same bytes, same id).
    pub id: String,
    pub sha256: String,
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub source_url: Option<String>,
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T16:00:00.123Z`.
    pub created_at: String,
    pub tags: Vec<String>,
    pub caption: Option<String>,
}

/// One page of [`Catalog::list_images`].
#[derive(Debug, Clone, Serialize)]
pub struct ImagePage {
    pub images: Vec<ImageRecord>,
    /// Pass back to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    /// Succeeded or failed.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            other => return Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
        })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A long-running piece of work (batch ingest, index rebuild, ...).
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    /// `job_` + 16 random hex characters.
    pub id: String,
    pub kind: String,
    pub state: JobState,
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    pub error: Option<String>,
    pub params: serde_json::Value,
    pub result: serde_json::Value,
    /// How many times the job was started.
    pub attempts: u32,
    pub created_at: String,
    pub updated_at: String,
}

/// The catalog. Cheap to clone (shared connection); `Send + Sync`.
#[derive(Clone)]
pub struct Catalog {
    conn: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "Catalog({})", path.display()),
            None => f.write_str("Catalog(:memory:)"),
        }
    }
}

impl Catalog {
    /// Opens the catalog at `path`, creating it (and its directory) if needed, and migrates it to
    /// [`SCHEMA_VERSION`]. A catalog written by a newer Lens, or a SQLite file that is not a Lens
    /// catalog, is a [`StoreError::Config`].
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        let conn = Connection::open(path)?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A private catalog in memory (tests, throw-away runs).
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Self> {
        let name = path.as_ref().map_or(":memory:".to_string(), |p| p.display().to_string());
        conn.busy_timeout(Duration::from_secs(10))?;
        check_identity(&conn, &name)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
        if path.is_some() && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Config(format!(
                "catalog {name}: cannot switch to WAL mode (journal_mode is {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn, &name)?;
        Ok(Catalog { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// The database file; `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no half-done transaction (dropped = rolled back).
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema version of the open database (equal to [`SCHEMA_VERSION`] after `open`).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self.conn().pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    // --- images ---------------------------------------------------------------------------------

    /// One transaction. If an image with the same sha256 exists, returns it with `created = false`
    /// (and stores `embedding` for `model` if it had none for that model). Otherwise inserts the
    /// image and its embedding, `created = true`. The generation is bumped whenever an embedding
    /// is stored (so also for a new model's embedding of an existing image).
    pub fn insert_image(&self, image: &NewImage, model: &str, embedding: &[f32]) -> Result<(ImageRecord, bool)> {
        let mut done = self.insert_images(&[(image, embedding)], model)?;
        Ok(done.pop().expect("one result per image"))
    }

    /// [`insert_image`](Self::insert_image) for many images in one transaction (one fsync): bulk
    /// imports and seeding. All or nothing: any invalid image fails the whole call.
    pub fn insert_images(&self, images: &[(&NewImage, &[f32])], model: &str) -> Result<Vec<(ImageRecord, bool)>> {
        for (image, embedding) in images {
            validate_sha256(&image.sha256)?;
            validate_embedding(model, embedding)?;
            i64::try_from(image.bytes)
                .map_err(|_| StoreError::InvalidInput(format!("image size {} too large", image.bytes)))?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(images.len());
        for (image, embedding) in images {
            out.push(insert_one(&tx, image, model, embedding)?);
        }
        tx.commit()?;
        Ok(out)
    }

    /// The image with public id `id`.
    pub fn image(&self, id: &str) -> Result<Option<ImageRecord>> {
        query_image(&self.conn(), "id = ?1", params![id])
    }

    pub fn image_by_sha256(&self, sha256: &str) -> Result<Option<ImageRecord>> {
        query_image(&self.conn(), "sha256 = ?1", params![sha256])
    }

    /// The images with these keys, in any order; missing keys are skipped.
    pub fn images_by_keys(&self, keys: &[i64]) -> Result<Vec<ImageRecord>> {
        let conn = self.conn();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE key IN ({marks})");
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(chunk), RawImage::from_row)?;
            for row in rows {
                out.push(row?.into_record()?.0);
            }
        }
        Ok(out)
    }

    /// Newest first (created_at desc, key desc), `limit` per page. `cursor` is the `next_cursor`
    /// of the previous page (opaque; stable under inserts: new images land before page one).
    /// `tag`: only images with exactly this tag.
    pub fn list_images(&self, limit: usize, cursor: Option<&str>, tag: Option<&str>) -> Result<ImagePage> {
        let after = cursor.map(decode_cursor).transpose()?;
        if limit == 0 {
            return Ok(ImagePage { images: Vec::new(), next_cursor: cursor.map(str::to_string) });
        }
        let mut sql = format!("SELECT {IMAGE_COLUMNS} FROM images i WHERE 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some((ms, key)) = after {
            sql.push_str(" AND (i.created_at, i.key) < (?, ?)");
            args.push(ms.into());
            args.push(key.into());
        }
        if let Some(tag) = tag {
            sql.push_str(" AND EXISTS (SELECT 1 FROM image_tags t WHERE t.tag = ? AND t.image_key = i.key)");
            args.push(tag.to_string().into());
        }
        sql.push_str(" ORDER BY i.created_at DESC, i.key DESC LIMIT ?");
        args.push(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX).into());
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), RawImage::from_row)?;
        let mut images = Vec::with_capacity(limit.min(1000));
        let mut last = None;
        let mut more = false;
        for row in rows {
            if images.len() == limit {
                more = true;
                break;
            }
            let (record, ms) = row?.into_record()?;
            last = Some((ms, record.key));
            images.push(record);
        }
        let next_cursor = if more { last.map(|(ms, key)| encode_cursor(ms, key)) } else { None };
        Ok(ImagePage { images, next_cursor })
    }

    pub fn count_images(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row("SELECT COUNT(*) FROM images", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Deletes the image, its tags and its embeddings; returns the deleted record. Bumps the generation.
    pub fn delete_image(&self, id: &str) -> Result<Option<ImageRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(record) = query_image(&tx, "id = ?1", params![id])? else {
            return Ok(None);
        };
        tx.execute("DELETE FROM images WHERE key = ?1", params![record.key])?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(Some(record))
    }

    /// Sets (or with `None` clears) the caption; `false` when there is no such image.
    pub fn set_caption(&self, id: &str, caption: Option<&str>) -> Result<bool> {
        let n = self.conn().execute("UPDATE images SET caption = ?1 WHERE id = ?2", params![caption, id])?;
        Ok(n > 0)
    }

    /// Replaces the tags (order kept, duplicates dropped); `false` when there is no such image.
    pub fn set_tags(&self, id: &str, tags: &[String]) -> Result<bool> {
        let tags = normalize_tags(tags);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(key) =
            tx.query_row("SELECT key FROM images WHERE id = ?1", params![id], |r| r.get::<_, i64>(0)).optional()?
        else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE images SET tags = ?1 WHERE key = ?2",
            params![serde_json::to_string(&tags).expect("strings serialize"), key],
        )?;
        tx.execute("DELETE FROM image_tags WHERE image_key = ?1", params![key])?;
        insert_tag_rows(&tx, key, &tags)?;
        tx.commit()?;
        Ok(true)
    }

    // --- embeddings -----------------------------------------------------------------------------

    /// The embedding of image `key` for `model`.
    pub fn embedding(&self, key: i64, model: &str) -> Result<Option<Vec<f32>>> {
        let row = self
            .conn()
            .query_row(
                "SELECT dim, vector FROM embeddings WHERE image_key = ?1 AND model = ?2",
                params![key, model],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?;
        row.map(|(dim, blob)| decode_vector(key, model, dim, &blob)).transpose()
    }

    /// How many embeddings are stored for `model`.
    pub fn count_embeddings(&self, model: &str) -> Result<u64> {
        let n: i64 =
            self.conn().query_row("SELECT COUNT(*) FROM embeddings WHERE model = ?1", params![model], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Calls `f(key, embedding)` for every embedding stored for `model`, in key order, reading
    /// 1024 rows at a time (the lock is not held while `f` runs, so `f` may use the catalog).
    /// Returns the count. Not a snapshot: read [`Catalog::generation`] before and after to know
    /// whether writes happened meanwhile.
    pub fn for_each_embedding(&self, model: &str, f: &mut dyn FnMut(i64, Vec<f32>)) -> Result<u64> {
        const CHUNK: usize = 1024;
        let mut after = i64::MIN;
        let mut count = 0u64;
        loop {
            let rows: Vec<(i64, i64, Vec<u8>)> = {
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(
                    "SELECT image_key, dim, vector FROM embeddings
                     WHERE model = ?1 AND image_key > ?2 ORDER BY image_key LIMIT ?3",
                )?;
                stmt.query_map(params![model, after, CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let n = rows.len();
            for (key, dim, blob) in rows {
                f(key, decode_vector(key, model, dim, &blob)?);
                count += 1;
                after = key;
            }
            if n < CHUNK {
                return Ok(count);
            }
        }
    }

    /// A counter bumped by every change to the stored embeddings (image insert or delete, a new
    /// model's embedding), so that a saved index snapshot can tell whether it is current.
    pub fn generation(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row("SELECT value FROM meta WHERE name = 'generation'", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    // --- jobs -----------------------------------------------------------------------------------

    /// A new queued job.
    pub fn create_job(&self, kind: &str, total: u64, params: &serde_json::Value) -> Result<JobRecord> {
        let id = format!("job_{:016x}", rand::random::<u64>());
        let now = now_ms();
        self.conn().execute(
            "INSERT INTO jobs (id, kind, state, total, params, created_at, updated_at)
             VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?5)",
            params![id, kind, to_i64(total)?, params.to_string(), now],
        )?;
        Ok(JobRecord {
            id,
            kind: kind.to_string(),
            state: JobState::Queued,
            total,
            done: 0,
            failed: 0,
            error: None,
            params: params.clone(),
            result: serde_json::Value::Null,
            attempts: 0,
            created_at: format_rfc3339_ms(now),
            updated_at: format_rfc3339_ms(now),
        })
    }

    /// Queued -> running (counts an attempt). Any other state is [`StoreError::InvalidInput`].
    pub fn start_job(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, next_run_at = NULL,
                             updated_at = ?2
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
        let conn = self.conn();
        let raw = conn
            .query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), params![id], RawJob::from_row)
            .optional()?;
        raw.map(RawJob::into_record).transpose()
    }

    /// The `limit` newest jobs, newest first.
    pub fn list_jobs(&self, limit: usize) -> Result<Vec<JobRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?1"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![limit], RawJob::from_row)?;
        rows.map(|r| r?.into_record()).collect()
    }

    /// At start-up: jobs a previous process left queued or running become failed with
    /// [`INTERRUPTED_JOB_ERROR`]; returns how many.
    pub fn fail_interrupted_jobs(&self) -> Result<u64> {
        let n = self.conn().execute(
            "UPDATE jobs SET state = 'failed', error = ?1, last_error = ?1, next_run_at = NULL,
                             updated_at = ?2
             WHERE state IN ('queued', 'running')",
            params![INTERRUPTED_JOB_ERROR, now_ms()],
        )?;
        Ok(n as u64)
    }
}

// --- schema ---------------------------------------------------------------------------------------

/// Refuses SQLite files that are not Lens catalogs (before anything is written to them).
fn check_identity(conn: &Connection, name: &str) -> Result<()> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if app_id == APPLICATION_ID {
        return Ok(());
    }
    if app_id != 0 {
        return Err(StoreError::Config(format!("{name} is not a Lens catalog (SQLite application_id {app_id:#x})")));
    }
    let tables: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )?;
    if tables > 0 {
        return Err(StoreError::Config(format!("{name} is not a Lens catalog (a SQLite database with other tables)")));
    }
    Ok(())
}

/// Applies the missing migration steps, each in its own transaction with the version bump, so a
/// crash leaves a consistent version; re-reads the version under the write lock, so two
/// processes opening a new catalog at once do not both migrate.
fn migrate(conn: &mut Connection, name: &str) -> Result<()> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Config(format!(
                "catalog {name} has schema version {version}, newer than this build of Lens \
                 knows ({SCHEMA_VERSION}): upgrade Lens, or point it at another catalog"
            )));
        }
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[version as usize])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
}

// --- rows -----------------------------------------------------------------------------------------

const IMAGE_COLUMNS: &str = "key, id, sha256, mime, width, height, bytes, source_url, created_at, tags, caption";

struct RawImage {
    key: i64,
    id: String,
    sha256: String,
    mime: String,
    width: u32,
    height: u32,
    bytes: i64,
    source_url: Option<String>,
    created_ms: i64,
    tags: String,
    caption: Option<String>,
}

impl RawImage {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawImage {
            key: r.get(0)?,
            id: r.get(1)?,
            sha256: r.get(2)?,
            mime: r.get(3)?,
            width: r.get(4)?,
            height: r.get(5)?,
            bytes: r.get(6)?,
            source_url: r.get(7)?,
            created_ms: r.get(8)?,
            tags: r.get(9)?,
            caption: r.get(10)?,
        })
    }

    /// The record and its creation time in ms.
    fn into_record(self) -> Result<(ImageRecord, i64)> {
        let tags = serde_json::from_str(&self.tags).map_err(|e| {
            StoreError::Corrupt(format!("image {}: tags {:?} are not a JSON string array: {e}", self.id, self.tags))
        })?;
        let record = ImageRecord {
            key: self.key,
            id: self.id,
            sha256: self.sha256,
            mime: self.mime,
            width: self.width,
            height: self.height,
            bytes: u64::try_from(self.bytes)
                .map_err(|_| StoreError::Corrupt(format!("image key {}: negative size {}", self.key, self.bytes)))?,
            source_url: self.source_url,
            created_at: format_rfc3339_ms(self.created_ms),
            tags,
            caption: self.caption,
        };
        Ok((record, self.created_ms))
    }
}

fn query_image(conn: &Connection, condition: &str, args: impl rusqlite::Params) -> Result<Option<ImageRecord>> {
    let raw = conn
        .query_row(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE {condition}"), args, RawImage::from_row)
        .optional()?;
    Ok(raw.map(RawImage::into_record).transpose()?.map(|(record, _)| record))
}

const JOB_COLUMNS: &str =
    "id, kind, state, total, done, failed, error, params, result, attempts, created_at, updated_at";

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
        })
    }

    fn into_record(self) -> Result<JobRecord> {
        let json = |what: &str, text: &str| {
            serde_json::from_str(text)
                .map_err(|e| StoreError::Corrupt(format!("job {}: {what} is not JSON: {e}", self.id)))
        };
        let [total, done, failed] = self.counts.map(|n| n.max(0) as u64);
        Ok(JobRecord {
            state: JobState::parse(&self.state)?,
            params: json("params", &self.params)?,
            result: json("result", &self.result)?,
            total,
            done,
            failed,
            error: self.error.clone(),
            attempts: self.attempts,
            created_at: format_rfc3339_ms(self.created_ms),
            updated_at: format_rfc3339_ms(self.updated_ms),
            kind: self.kind.clone(),
            id: self.id.clone(),
        })
    }
}

// --- helpers --------------------------------------------------------------------------------------

fn bump_generation(tx: &Transaction<'_>) -> Result<()> {
    tx.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'", [])?;
    Ok(())
}

/// One image of [`Catalog::insert_images`], inside its transaction (inputs already validated).
fn insert_one(tx: &Transaction<'_>, image: &NewImage, model: &str, embedding: &[f32]) -> Result<(ImageRecord, bool)> {
    let bytes = image.bytes;
    if let Some(existing) = query_image(tx, "sha256 = ?1", params![image.sha256])? {
        let has: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM embeddings WHERE image_key = ?1 AND model = ?2)",
            params![existing.key, model],
            |r| r.get(0),
        )?;
        if !has {
            insert_embedding(tx, existing.key, model, embedding)?;
            bump_generation(tx)?;
        }
        return Ok((existing, false));
    }
    let created_ms = now_ms();
    let tags = normalize_tags(&image.tags);
    let id = image.sha256[..32].to_string();
    tx.execute(
        "INSERT INTO images (id, sha256, mime, width, height, bytes, source_url, created_at, tags)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            image.sha256,
            image.mime,
            image.width,
            image.height,
            bytes as i64,
            image.source_url,
            created_ms,
            serde_json::to_string(&tags).expect("strings serialize"),
        ],
    )?;
    let key = tx.last_insert_rowid();
    insert_tag_rows(tx, key, &tags)?;
    insert_embedding(tx, key, model, embedding)?;
    bump_generation(tx)?;
    let record = ImageRecord {
        key,
        id,
        sha256: image.sha256.clone(),
        mime: image.mime.clone(),
        width: image.width,
        height: image.height,
        bytes: image.bytes,
        source_url: image.source_url.clone(),
        created_at: format_rfc3339_ms(created_ms),
        tags,
        caption: None,
    };
    Ok((record, true))
}

fn insert_tag_rows(tx: &Transaction<'_>, key: i64, tags: &[String]) -> Result<()> {
    let mut stmt = tx.prepare_cached("INSERT INTO image_tags (tag, image_key) VALUES (?1, ?2)")?;
    for tag in tags {
        stmt.execute(params![tag, key])?;
    }
    Ok(())
}

fn insert_embedding(tx: &Transaction<'_>, key: i64, model: &str, v: &[f32]) -> Result<()> {
    let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    tx.execute(
        "INSERT INTO embeddings (image_key, model, dim, vector) VALUES (?1, ?2, ?3, ?4)",
        params![key, model, v.len() as i64, blob],
    )?;
    Ok(())
}

fn decode_vector(key: i64, model: &str, dim: i64, blob: &[u8]) -> Result<Vec<f32>> {
    if dim <= 0 || blob.len() as u64 != dim as u64 * 4 {
        return Err(StoreError::Corrupt(format!(
            "embedding of image key {key} for model {model:?}: {} bytes, expected dim {dim} x 4",
            blob.len()
        )));
    }
    Ok(blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Order kept, exact duplicates dropped.
fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        if !out.contains(tag) {
            out.push(tag.clone());
        }
    }
    out
}

fn validate_sha256(sha256: &str) -> Result<()> {
    if sha256.len() == 64 && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!("sha256 {sha256:?} is not 64 lowercase hex characters")))
    }
}

fn validate_embedding(model: &str, v: &[f32]) -> Result<()> {
    if model.is_empty() {
        return Err(StoreError::InvalidInput("embedding model name is empty".into()));
    }
    if v.is_empty() {
        return Err(StoreError::InvalidInput(format!("empty embedding for model {model:?}")));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(StoreError::InvalidInput(format!("embedding for model {model:?} has a non-finite value at {i}")));
    }
    Ok(())
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| StoreError::InvalidInput(format!("count {n} too large")))
}

/// 32 hex characters: created_at ms and key, big-endian.
fn encode_cursor(ms: i64, key: i64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&ms.to_be_bytes());
    b[8..].copy_from_slice(&key.to_be_bytes());
    hex::encode(b)
}

fn decode_cursor(cursor: &str) -> Result<(i64, i64)> {
    let bad = || StoreError::InvalidInput(format!("malformed cursor {cursor:?}"));
    let b = hex::decode(cursor).map_err(|_| bad())?;
    let b: [u8; 16] = b.try_into().map_err(|_| bad())?;
    let ms = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let key = i64::from_be_bytes(b[8..].try_into().expect("8 bytes"));
    Ok((ms, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for (ms, key) in [(0, 0), (1_795_449_600_123, 42), (-5, i64::MAX)] {
            assert_eq!(decode_cursor(&encode_cursor(ms, key)).unwrap(), (ms, key));
        }
        assert!(matches!(decode_cursor("zz"), Err(StoreError::InvalidInput(_))));
        assert!(matches!(decode_cursor("00ff"), Err(StoreError::InvalidInput(_))));
    }

    #[test]
    fn connection_is_durable_wal_with_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let conn = catalog.conn();
        let get = |pragma: &str| -> String {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(get("journal_mode"), "wal");
        assert_eq!(get("synchronous"), "2"); // FULL
        assert_eq!(get("foreign_keys"), "1");
        assert_eq!(get("busy_timeout"), "10000");
        assert_eq!(get("application_id"), APPLICATION_ID.to_string());
    }

    #[test]
    fn catalog_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Catalog>();
    }
}
