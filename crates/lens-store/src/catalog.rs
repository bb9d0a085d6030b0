//! The catalog: images, their embeddings and jobs in embedded SQLite.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a transaction that returned `Ok` survives
//! kill -9 and power loss. One connection behind a mutex: every method is a short critical section
//! (the server calls them from `spawn_blocking`); long scans ([`Catalog::for_each_embedding`]) take
//! the lock chunk by chunk so writers are never held up for long.

use std::collections::HashMap;
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

/// The kind of caption jobs: one per image, resumable (a restart puts them back in the queue).
pub const CAPTION_JOB: &str = "caption";

/// Job kinds a restart re-queues instead of failing: their work is one idempotent step per job,
/// described wholly by the job's params. The others (ingest of a URL list, index rebuild) hold
/// their inputs in memory and cannot resume.
pub const RESUMABLE_JOB_KINDS: &[&str] = &[CAPTION_JOB];

/// Most terms of a caption search query; the rest are ignored.
pub const MAX_QUERY_TERMS: usize = 32;
/// Longest term of a caption search query, in characters; longer ones are cut.
pub const MAX_TERM_CHARS: usize = 64;

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
    // 2: captioning. Jobs gain the `dead` (retries exhausted) and `cancelled` states, a subject (a
    // caption job's image id: one pending job per subject), a start time and a lease; images gain
    // colours and metadata; a caption cache, caption embeddings per CLIP model, and FTS5 over captions
    // kept in sync by triggers (every path that writes `images.caption` or deletes a row).
    r#"
    CREATE TABLE jobs_v2 (
        id          TEXT    PRIMARY KEY,
        kind        TEXT    NOT NULL,
        state       TEXT    NOT NULL
                    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),
        total       INTEGER NOT NULL DEFAULT 0,
        done        INTEGER NOT NULL DEFAULT 0,
        failed      INTEGER NOT NULL DEFAULT 0,
        error       TEXT,
        params      TEXT    NOT NULL DEFAULT 'null',   -- JSON
        result      TEXT    NOT NULL DEFAULT 'null',   -- JSON
        attempts    INTEGER NOT NULL DEFAULT 0,        -- times started; the fencing token of a claim
        next_run_at INTEGER,                           -- ms; a queued job waits until then
        last_error  TEXT,                              -- error of the latest failed attempt
        subject     TEXT,                              -- what the job is about (caption: the image id)
        started_at  INTEGER,                           -- ms; start of the latest attempt
        lease_until INTEGER,                           -- ms; a running job past its lease may be claimed again
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    INSERT INTO jobs_v2 (id, kind, state, total, done, failed, error, params, result, attempts, next_run_at,
                         last_error, created_at, updated_at)
        SELECT id, kind, state, total, done, failed, error, params, result, attempts, next_run_at,
               last_error, created_at, updated_at
        FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_v2 RENAME TO jobs;
    CREATE INDEX jobs_newest ON jobs (created_at DESC);
    CREATE INDEX jobs_runnable ON jobs (kind, state, next_run_at);
    CREATE UNIQUE INDEX jobs_one_pending_per_subject ON jobs (kind, subject)
        WHERE subject IS NOT NULL AND state IN ('queued', 'running');

    ALTER TABLE images ADD COLUMN colors TEXT;         -- JSON: dominant colours
    ALTER TABLE images ADD COLUMN metadata TEXT;       -- JSON: format, size, orientation, EXIF

    -- (image bytes, caption model, canonical options JSON) -> caption: a hit runs no model.
    CREATE TABLE caption_cache (
        sha256      TEXT    NOT NULL,
        model       TEXT    NOT NULL,
        options     TEXT    NOT NULL,
        caption     TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (sha256, model, options)
    );
    CREATE INDEX caption_cache_oldest ON caption_cache (created_at);

    -- The caption embedded by a CLIP text tower, per CLIP model (like `embeddings` for the image).
    CREATE TABLE caption_embeddings (
        image_key   INTEGER NOT NULL REFERENCES images (key) ON DELETE CASCADE,
        model       TEXT    NOT NULL,
        dim         INTEGER NOT NULL,
        vector      BLOB    NOT NULL,                  -- dim little-endian f32
        PRIMARY KEY (image_key, model)
    );

    -- Keyword search over captions: an external-content FTS5 index on images.caption (rowid = key).
    CREATE VIRTUAL TABLE captions_fts USING fts5 (
        caption, content = 'images', content_rowid = 'key',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER images_fts_insert AFTER INSERT ON images WHEN new.caption IS NOT NULL BEGIN
        INSERT INTO captions_fts (rowid, caption) VALUES (new.key, new.caption);
    END;
    CREATE TRIGGER images_fts_delete AFTER DELETE ON images WHEN old.caption IS NOT NULL BEGIN
        INSERT INTO captions_fts (captions_fts, rowid, caption) VALUES ('delete', old.key, old.caption);
    END;
    CREATE TRIGGER images_fts_update AFTER UPDATE OF caption ON images BEGIN
        INSERT INTO captions_fts (captions_fts, rowid, caption)
            SELECT 'delete', old.key, old.caption WHERE old.caption IS NOT NULL;
        INSERT INTO captions_fts (rowid, caption) SELECT new.key, new.caption WHERE new.caption IS NOT NULL;
    END;
    INSERT INTO captions_fts (captions_fts) VALUES ('rebuild');
    "#,
    // 3: the change feed of browser sync. One counter (`meta.sync_seq`) numbers every change a mirror
    // needs: an image added, its caption or tags changed, an embedding stored (a new model's), an image
    // deleted. `images.seq` holds an image's latest number; a deleted image leaves a tombstone with
    // its own. Triggers do it, so every statement that changes an image numbers the change in its own
    // transaction. Existing images are numbered in key order (seq = key).
    r#"
    ALTER TABLE images ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE images SET seq = key;
    CREATE INDEX images_by_seq ON images (seq);
    INSERT INTO meta (name, value) VALUES ('sync_seq', COALESCE((SELECT MAX(key) FROM images), 0));

    CREATE TABLE sync_tombstones (
        id          TEXT    PRIMARY KEY,               -- the deleted image's public id
        seq         INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sync_tombstones_by_seq ON sync_tombstones (seq);

    CREATE TRIGGER images_sync_insert AFTER INSERT ON images BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'sync_seq';
        UPDATE images SET seq = (SELECT value FROM meta WHERE name = 'sync_seq') WHERE key = new.key;
        DELETE FROM sync_tombstones WHERE id = new.id;
    END;
    CREATE TRIGGER images_sync_update AFTER UPDATE OF caption, tags ON images
        WHEN old.caption IS NOT new.caption OR old.tags IS NOT new.tags BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'sync_seq';
        UPDATE images SET seq = (SELECT value FROM meta WHERE name = 'sync_seq') WHERE key = new.key;
    END;
    CREATE TRIGGER embeddings_sync_insert AFTER INSERT ON embeddings BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'sync_seq';
        UPDATE images SET seq = (SELECT value FROM meta WHERE name = 'sync_seq') WHERE key = new.image_key;
    END;
    CREATE TRIGGER images_sync_delete AFTER DELETE ON images BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'sync_seq';
        INSERT OR REPLACE INTO sync_tombstones (id, seq) VALUES (old.id, (SELECT value FROM meta WHERE name = 'sync_seq'));
    END;
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
    /// Dominant colours (JSON), when computed.
    pub colors: Option<serde_json::Value>,
    /// Format, size, orientation, EXIF (JSON), when read.
    pub metadata: Option<serde_json::Value>,
    /// When set, a [`CAPTION_JOB`] with these caption options (JSON) is queued in the same
    /// transaction: for a new image, and for an existing one with no caption and no pending job.
    pub caption_options: Option<serde_json::Value>,
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
    /// Dominant colours, when computed at ingest.
    pub colors: Option<serde_json::Value>,
    /// Format, size, orientation, EXIF, when read at ingest.
    pub metadata: Option<serde_json::Value>,
}

/// One entry of the change feed ([`Catalog::changes_since`]): the latest state of one image.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The image as it is now, with its embedding by the feed's model.
    Upsert {
        seq: u64,
        image: Box<ImageRecord>,
        /// `created_at` in ms since the Unix epoch.
        created_ms: i64,
        embedding: Vec<f32>,
    },
    /// The image with this public id was deleted.
    Delete { seq: u64, id: String },
}

impl Change {
    pub fn seq(&self) -> u64 {
        match self {
            Change::Upsert { seq, .. } | Change::Delete { seq, .. } => *seq,
        }
    }
}

/// One page of [`Catalog::changes_since`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePage {
    /// Ascending `seq`, each image at most once.
    pub changes: Vec<Change>,
    /// The `seq` of the last change returned; `since` when none was.
    pub next_cursor: u64,
    /// More changes follow `next_cursor` now.
    pub more: bool,
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
    /// Failed `max_attempts` times: kept with its `last_error` (the dead-letter queue), never retried.
    Dead,
    /// Ended without doing its work because its subject went away (a deleted image).
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Neither queued nor running: the job will not change any more.
    pub fn is_finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }

    /// The state named `s` (`queued`, `running`, `succeeded`, `failed`, `dead`, `cancelled`).
    pub fn parse(s: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    fn from_column(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job state {s:?}")))
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
    /// How many times the job was started. A claim returns the count it set; pass it back to
    /// [`Catalog::complete_job`] / [`Catalog::fail_attempt`] (a fencing token).
    pub attempts: u32,
    /// When a queued job may run next (a retry's back-off), RFC 3339; `None` for other states.
    pub next_run_at: Option<String>,
    /// The error of the latest failed attempt (also kept once a job is `dead`).
    pub last_error: Option<String>,
    /// When the latest attempt started.
    pub started_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

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
        withdraw_caption_jobs(&tx, &record.id, "the image was deleted")?;
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(Some(record))
    }

    /// Sets (or with `None` clears) the caption; `false` when there is no such image. Caption
    /// embeddings of the old caption are dropped; the keyword index follows (triggers).
    pub fn set_caption(&self, id: &str, caption: Option<&str>) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = write_caption(&tx, id, caption)?.is_some();
        tx.commit()?;
        Ok(done)
    }

    /// Sets the caption and its embedding by CLIP model `model` in one transaction; the image's
    /// record after the change, `None` when there is no such image (deleted meanwhile).
    pub fn store_caption(
        &self,
        id: &str,
        caption: &str,
        model: &str,
        embedding: &[f32],
    ) -> Result<Option<ImageRecord>> {
        Ok(self.store_captions(&[(id, caption, embedding)], model)?.and_then(|mut v| v.pop()))
    }

    /// [`store_caption`](Self::store_caption) for several images `(id, caption, embedding)`, all
    /// in one transaction: the records after the change, in order, or `None` — and nothing stored —
    /// when any image does not exist.
    pub fn store_captions(&self, items: &[(&str, &str, &[f32])], model: &str) -> Result<Option<Vec<ImageRecord>>> {
        for (_, _, embedding) in items {
            validate_embedding(model, embedding)?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(items.len());
        for (id, caption, embedding) in items {
            let Some(key) = write_caption(&tx, id, Some(caption))? else {
                return Ok(None); // dropped: rolled back
            };
            insert_vector(&tx, "caption_embeddings", key, model, embedding)?;
            out.extend(query_image(&tx, "key = ?1", params![key])?);
        }
        tx.commit()?;
        Ok(Some(out))
    }

    /// The embedding of image `key`'s caption by CLIP model `model`.
    pub fn caption_embedding(&self, key: i64, model: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.vectors_by_keys("caption_embeddings", &[key], model)?.remove(&key))
    }

    /// Caption embeddings by `model` of these images; images without one are absent.
    pub fn caption_embeddings(&self, keys: &[i64], model: &str) -> Result<HashMap<i64, Vec<f32>>> {
        self.vectors_by_keys("caption_embeddings", keys, model)
    }

    /// Image embeddings by `model` of these images; images without one are absent.
    pub fn embeddings(&self, keys: &[i64], model: &str) -> Result<HashMap<i64, Vec<f32>>> {
        self.vectors_by_keys("embeddings", keys, model)
    }

    fn vectors_by_keys(&self, table: &str, keys: &[i64], model: &str) -> Result<HashMap<i64, Vec<f32>>> {
        let conn = self.conn();
        let mut out = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT image_key, dim, vector FROM {table} WHERE model = ? AND image_key IN ({marks})");
            let mut stmt = conn.prepare(&sql)?;
            let args = std::iter::once(rusqlite::types::Value::from(model.to_string()))
                .chain(chunk.iter().map(|k| rusqlite::types::Value::from(*k)));
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
            })?;
            for row in rows {
                let (key, dim, blob) = row?;
                out.insert(key, decode_vector(key, model, dim, &blob)?);
            }
        }
        Ok(out)
    }

    /// Keyword search over captions (SQLite FTS5, Porter-stemmed, case and accent blind). `query`
    /// is any user text: it is cut into terms (runs of letters and digits, at most
    /// [`MAX_QUERY_TERMS`]), each quoted, joined with OR — so it can never be an FTS syntax error or
    /// an operator. Returns `(image key, score)`, best first, where score = -bm25 (> 0; higher is a
    /// better match: more of the rarer terms, in shorter captions). No terms: empty.
    pub fn search_captions(&self, query: &str, limit: usize) -> Result<Vec<(i64, f64)>> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT rowid, bm25(captions_fts) FROM captions_fts WHERE captions_fts MATCH ?1
             ORDER BY bm25(captions_fts), rowid LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![fts, limit], |r| Ok((r.get::<_, i64>(0)?, -r.get::<_, f64>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The [`search_captions`](Self::search_captions) scores of these images (those whose caption
    /// matches `query`; the others are absent).
    pub fn caption_match_scores(&self, query: &str, keys: &[i64]) -> Result<HashMap<i64, f64>> {
        let Some(fts) = fts_query(query) else {
            return Ok(HashMap::new());
        };
        let conn = self.conn();
        let mut out = HashMap::new();
        for chunk in keys.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "SELECT rowid, bm25(captions_fts) FROM captions_fts WHERE captions_fts MATCH ? AND rowid IN ({marks})"
            );
            let mut stmt = conn.prepare(&sql)?;
            let args = std::iter::once(rusqlite::types::Value::from(fts.clone()))
                .chain(chunk.iter().map(|k| rusqlite::types::Value::from(*k)));
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get::<_, i64>(0)?, -r.get::<_, f64>(1)?)))?;
            for row in rows {
                let (key, score) = row?;
                out.insert(key, score);
            }
        }
        Ok(out)
    }

    // --- caption cache --------------------------------------------------------------------------

    /// The cached caption of the bytes `sha256` by caption model `model` with `options` (canonical JSON).
    pub fn cached_caption(&self, sha256: &str, model: &str, options: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT caption FROM caption_cache WHERE sha256 = ?1 AND model = ?2 AND options = ?3",
                params![sha256, model, options],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Caches captions `(sha256, model, options, caption)` in one transaction, then drops the
    /// oldest entries past `max_entries`.
    pub fn cache_captions(&self, entries: &[(&str, &str, &str, &str)], max_entries: u64) -> Result<()> {
        for (sha256, ..) in entries {
            validate_sha256(sha256)?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        for (sha256, model, options, caption) in entries {
            tx.execute(
                "INSERT INTO caption_cache (sha256, model, options, caption, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (sha256, model, options) DO UPDATE SET caption = excluded.caption,
                                                                    created_at = excluded.created_at",
                params![sha256, model, options, caption, now],
            )?;
        }
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM caption_cache", [], |r| r.get(0))?;
        let over = count - i64::try_from(max_entries).unwrap_or(i64::MAX);
        if over > 0 {
            tx.execute(
                "DELETE FROM caption_cache WHERE rowid IN
                   (SELECT rowid FROM caption_cache ORDER BY created_at, rowid LIMIT ?1)",
                params![over],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Entries in the caption cache.
    pub fn count_cached_captions(&self) -> Result<u64> {
        let n: i64 = self.conn().query_row("SELECT COUNT(*) FROM caption_cache", [], |r| r.get(0))?;
        Ok(n as u64)
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

    // --- change feed ----------------------------------------------------------------------------

    /// The change feed of browser sync: the latest state of every image that changed after `since`
    /// (a `seq` from an earlier page, 0 for everything), at most `limit`, ascending `seq`. An image
    /// appears once, at its latest change, as an upsert with its embedding by `model` — or not at
    /// all while it has none for `model` (storing one is a change, so it shows up then); a deleted
    /// one as a delete. Read in one transaction, and seqs are taken inside the writing transactions
    /// (which SQLite runs one at a time), so a seq a page returns is never followed by a smaller one
    /// committing later: walking the pages misses no change even while writes go on.
    pub fn changes_since(&self, since: u64, limit: usize, model: &str) -> Result<ChangePage> {
        let since_i =
            i64::try_from(since).map_err(|_| StoreError::InvalidInput(format!("cursor {since} too large")))?;
        let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut changes: Vec<Change> = Vec::new();
        {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {IMAGE_COLUMNS}, seq, dim, vector FROM images JOIN embeddings ON image_key = key AND model = ?2
                 WHERE seq > ?1 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![since_i, model, take], |r| {
                Ok((RawImage::from_row(r)?, r.get::<_, i64>(13)?, r.get::<_, i64>(14)?, r.get::<_, Vec<u8>>(15)?))
            })?;
            for row in rows {
                let (raw, seq, dim, blob) = row?;
                let (image, created_ms) = raw.into_record()?;
                let embedding = decode_vector(image.key, model, dim, &blob)?;
                changes.push(Change::Upsert { seq: seq_of(seq)?, image: Box::new(image), created_ms, embedding });
            }
            let mut stmt =
                tx.prepare_cached("SELECT seq, id FROM sync_tombstones WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = stmt.query_map(params![since_i, take], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for row in rows {
                let (seq, id) = row?;
                changes.push(Change::Delete { seq: seq_of(seq)?, id });
            }
        }
        tx.commit()?;
        // Each query's first limit + 1 hold the union's first limit + 1.
        changes.sort_by_key(Change::seq);
        let more = changes.len() > limit;
        changes.truncate(limit);
        let next_cursor = changes.last().map_or(since, Change::seq);
        Ok(ChangePage { changes, next_cursor, more })
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
        let conn = self.conn();
        let id = insert_job(&conn, kind, None, total, params)?.expect("no subject, no conflict");
        query_job(&conn, &id)?.ok_or_else(|| StoreError::NotFound(format!("job {id}")))
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
             ORDER BY created_at DESC, rowid DESC LIMIT ?3"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![filter.kind, filter.state.map(JobState::as_str), limit], RawJob::from_row)?;
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

const IMAGE_COLUMNS: &str =
    "key, id, sha256, mime, width, height, bytes, source_url, created_at, tags, caption, colors, metadata";

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
    colors: Option<String>,
    metadata: Option<String>,
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
            colors: r.get(11)?,
            metadata: r.get(12)?,
        })
    }

    /// The record and its creation time in ms.
    fn into_record(self) -> Result<(ImageRecord, i64)> {
        let tags = serde_json::from_str(&self.tags).map_err(|e| {
            StoreError::Corrupt(format!("image {}: tags {:?} are not a JSON string array: {e}", self.id, self.tags))
        })?;
        let json = |what: &str, text: Option<&str>| -> Result<Option<serde_json::Value>> {
            text.map(|t| {
                serde_json::from_str(t)
                    .map_err(|e| StoreError::Corrupt(format!("image {}: {what} is not JSON: {e}", self.id)))
            })
            .transpose()
        };
        let colors = json("colors", self.colors.as_deref())?;
        let metadata = json("metadata", self.metadata.as_deref())?;
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
            colors,
            metadata,
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
        let state = JobState::from_column(&self.state)?;
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
fn insert_job(
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

/// The caption jobs of a deleted image: queued ones are removed (never started, nothing to keep:
/// a rolled-back upload leaves no trace), a running one is cancelled (its worker's completion is
/// then refused) — the image is gone, so none of them ends dead.
fn withdraw_caption_jobs(tx: &Transaction<'_>, image_id: &str, reason: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM jobs WHERE kind = ?1 AND subject = ?2 AND state = 'queued' AND attempts = 0",
        params![CAPTION_JOB, image_id],
    )?;
    tx.execute(
        "UPDATE jobs SET state = 'cancelled', result = ?3, next_run_at = NULL, lease_until = NULL, updated_at = ?4
         WHERE kind = ?1 AND subject = ?2 AND state IN ('queued', 'running')",
        params![CAPTION_JOB, image_id, serde_json::json!({"reason": reason}).to_string(), now_ms()],
    )?;
    Ok(())
}

/// Writes `images.caption` (the FTS triggers follow) and drops the old caption's embeddings;
/// the image key, `None` when there is no such image.
fn write_caption(tx: &Transaction<'_>, id: &str, caption: Option<&str>) -> Result<Option<i64>> {
    let Some(key) =
        tx.query_row("SELECT key FROM images WHERE id = ?1", params![id], |r| r.get::<_, i64>(0)).optional()?
    else {
        return Ok(None);
    };
    tx.execute("UPDATE images SET caption = ?1 WHERE key = ?2", params![caption, key])?;
    tx.execute("DELETE FROM caption_embeddings WHERE image_key = ?1", params![key])?;
    Ok(Some(key))
}

/// User text as an FTS5 query that can only match terms: runs of letters and digits (at most
/// [`MAX_QUERY_TERMS`] of at most [`MAX_TERM_CHARS`] characters, duplicates dropped), each a quoted
/// string, joined with OR. Quotes, `*`, `^`, `:`, parentheses, `AND`/`OR`/`NOT`/`NEAR` as words —
/// all become plain terms or separators. `None` when no term is left.
pub fn fts_query(text: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let term: String = word.chars().take(MAX_TERM_CHARS).flat_map(char::to_lowercase).collect();
        if !terms.contains(&term) {
            terms.push(term);
        }
        if terms.len() == MAX_QUERY_TERMS {
            break;
        }
    }
    if terms.is_empty() {
        return None;
    }
    // Terms hold no `"` (not alphanumeric); quoting makes each a string, never an operator.
    Some(terms.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" OR "))
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

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
            insert_vector(tx, "embeddings", existing.key, model, embedding)?;
            bump_generation(tx)?;
        }
        if let Some(options) = &image.caption_options
            && existing.caption.is_none()
        {
            insert_job(tx, CAPTION_JOB, Some(&existing.id), 1, &caption_job_params(&existing.id, options))?;
        }
        return Ok((existing, false));
    }
    let created_ms = now_ms();
    let tags = normalize_tags(&image.tags);
    let id = image.sha256[..32].to_string();
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(serde_json::Value::to_string);
    tx.execute(
        "INSERT INTO images (id, sha256, mime, width, height, bytes, source_url, created_at, tags, colors, metadata)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            json(&image.colors),
            json(&image.metadata),
        ],
    )?;
    let key = tx.last_insert_rowid();
    insert_tag_rows(tx, key, &tags)?;
    insert_vector(tx, "embeddings", key, model, embedding)?;
    bump_generation(tx)?;
    if let Some(options) = &image.caption_options {
        insert_job(tx, CAPTION_JOB, Some(&id), 1, &caption_job_params(&id, options))?;
    }
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
        colors: image.colors.clone(),
        metadata: image.metadata.clone(),
    };
    Ok((record, true))
}

/// A caption job's params: the image and the caption options.
pub fn caption_job_params(image_id: &str, options: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"image": image_id, "options": options})
}

fn insert_tag_rows(tx: &Transaction<'_>, key: i64, tags: &[String]) -> Result<()> {
    let mut stmt = tx.prepare_cached("INSERT INTO image_tags (tag, image_key) VALUES (?1, ?2)")?;
    for tag in tags {
        stmt.execute(params![tag, key])?;
    }
    Ok(())
}

/// Into `embeddings` or `caption_embeddings` (replacing an older vector of the same model).
fn insert_vector(tx: &Transaction<'_>, table: &str, key: i64, model: &str, v: &[f32]) -> Result<()> {
    let blob: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    tx.execute(
        &format!("INSERT OR REPLACE INTO {table} (image_key, model, dim, vector) VALUES (?1, ?2, ?3, ?4)"),
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

fn seq_of(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative change number {n}")))
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

    /// A catalog written by the first schema (images with a caption, a finished and an interrupted
    /// job) upgrades in place: data kept, captions searchable, new columns empty, new states allowed.
    #[test]
    fn version_1_catalog_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "wal").unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
            conn.execute_batch(
                "INSERT INTO images (id, sha256, mime, width, height, bytes, created_at, tags, caption)
                 VALUES ('aaaa', 'aaaa', 'image/png', 1, 1, 10, 1000, '[\"t\"]', 'a red rocket'),
                        ('bbbb', 'bbbb', 'image/png', 1, 1, 10, 2000, '[]', NULL);
                 INSERT INTO embeddings (image_key, model, dim, vector) VALUES (1, 'm', 1, x'0000803f');
                 INSERT INTO jobs (id, kind, state, total, done, params, result, attempts, created_at, updated_at)
                 VALUES ('job_old', 'ingest', 'succeeded', 2, 2, '{\"urls\":2}', '{\"images\":[]}', 1, 5, 6),
                        ('job_cut', 'ingest', 'running', 2, 1, 'null', 'null', 1, 7, 8);
                 UPDATE meta SET value = 7 WHERE name = 'generation';",
            )
            .unwrap();
        }
        let catalog = Catalog::open(&path).unwrap();
        assert_eq!(catalog.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 3);
        let a = catalog.image("aaaa").unwrap().unwrap();
        assert_eq!(
            (a.caption.as_deref(), a.tags.as_slice(), a.colors.as_ref()),
            (Some("a red rocket"), &["t".to_string()][..], None)
        );
        assert_eq!(catalog.embedding(a.key, "m").unwrap(), Some(vec![1.0]));
        assert_eq!(catalog.generation().unwrap(), 7);
        assert_eq!(catalog.search_captions("rocket", 10).unwrap().iter().map(|h| h.0).collect::<Vec<_>>(), vec![a.key]);
        let old = catalog.job("job_old").unwrap().unwrap();
        assert_eq!(
            (old.state, old.params.clone(), old.attempts),
            (JobState::Succeeded, serde_json::json!({"urls": 2}), 1)
        );
        assert_eq!(catalog.fail_interrupted_jobs().unwrap(), 1);
        assert_eq!(catalog.job("job_cut").unwrap().unwrap().state, JobState::Failed);
        // The new parts work on the upgraded file.
        assert!(catalog.set_caption("bbbb", Some("a blue boat")).unwrap());
        assert_eq!(catalog.search_captions("boat", 10).unwrap().len(), 1);
        let job = catalog.enqueue_job(CAPTION_JOB, "bbbb", &serde_json::json!(null)).unwrap().unwrap();
        let claimed = catalog.claim_next(CAPTION_JOB, now_ms(), 1000).unwrap().unwrap();
        assert_eq!(claimed.id, job.id);
        let policy = RetryPolicy { max_attempts: 1, ..Default::default() };
        assert_eq!(catalog.fail_attempt(&job.id, 1, "x", now_ms(), &policy).unwrap(), Some(JobState::Dead));
        drop(catalog);
        // And reopening does not migrate again.
        assert_eq!(Catalog::open(&path).unwrap().list_jobs(10).unwrap().len(), 3);
    }

    fn new_image(n: u8) -> NewImage {
        NewImage {
            sha256: format!("{:02x}", n).repeat(32),
            mime: "image/png".into(),
            width: 2,
            height: 1,
            bytes: 10,
            ..Default::default()
        }
    }

    /// (seq, "+id" for an upsert or "-id" for a delete) of every change after `since`, walked `limit` at a time.
    fn walk(catalog: &Catalog, since: u64, limit: usize, model: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut cursor = since;
        loop {
            let page = catalog.changes_since(cursor, limit, model).unwrap();
            assert!(page.changes.len() <= limit);
            for change in &page.changes {
                out.push(match change {
                    Change::Upsert { seq, image, .. } => (*seq, format!("+{}", image.id)),
                    Change::Delete { seq, id } => (*seq, format!("-{id}")),
                });
            }
            assert!(page.next_cursor >= cursor);
            cursor = page.next_cursor;
            if !page.more {
                return out;
            }
        }
    }

    /// Every change a mirror needs gets a new, larger seq; only the latest state per image is listed;
    /// an image without an embedding by the feed's model waits until it has one; deletes are tombstones
    /// that a re-insert of the same bytes replaces.
    #[test]
    fn change_feed_lists_the_latest_state_per_image() {
        let catalog = Catalog::open_in_memory().unwrap();
        let page = catalog.changes_since(0, 10, "m").unwrap();
        assert_eq!((page.changes.len(), page.next_cursor, page.more), (0, 0, false));
        let id = |n: u8| format!("{:02x}", n).repeat(16);
        for n in 1..=3 {
            catalog.insert_image(&new_image(n), "m", &[n as f32, 0.5]).unwrap();
        }
        let first = walk(&catalog, 0, 10, "m");
        assert_eq!(first.iter().map(|c| c.1.clone()).collect::<Vec<_>>(), [1, 2, 3].map(|n| format!("+{}", id(n))));
        assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
        let Change::Upsert { image, embedding, created_ms, .. } = &catalog.changes_since(0, 1, "m").unwrap().changes[0]
        else {
            panic!("an upsert")
        };
        assert_eq!((image.id.clone(), embedding.clone()), (id(1), vec![1.0, 0.5]));
        assert_eq!(format_rfc3339_ms(*created_ms), image.created_at);
        // Limit 1 walks the same changes, each once.
        assert_eq!(walk(&catalog, 0, 1, "m"), first);
        let head = first.last().unwrap().0;
        assert!(catalog.changes_since(head, 10, "m").unwrap().changes.is_empty());
        assert_eq!(catalog.changes_since(head + 100, 10, "m").unwrap().next_cursor, head + 100, "ahead: empty page");

        // Caption, tags, delete: each moves the image to the head of the feed, once.
        assert!(catalog.set_caption(&id(1), Some("a dog")).unwrap());
        assert!(catalog.set_tags(&id(2), &["x".into()]).unwrap());
        catalog.delete_image(&id(3)).unwrap();
        let after = walk(&catalog, head, 1, "m");
        assert_eq!(
            after.iter().map(|c| c.1.clone()).collect::<Vec<_>>(),
            [format!("+{}", id(1)), format!("+{}", id(2)), format!("-{}", id(3))]
        );
        let all = walk(&catalog, 0, 2, "m");
        assert_eq!(all, after, "from the start: the latest state only");
        let Change::Upsert { image, .. } = &catalog.changes_since(0, 1, "m").unwrap().changes[0] else { panic!() };
        assert_eq!((image.caption.as_deref(), image.tags.len()), (Some("a dog"), 0));
        // Setting the same caption again is no change.
        let head = all.last().unwrap().0;
        catalog.set_caption(&id(1), Some("a dog")).unwrap();
        assert!(catalog.changes_since(head, 10, "m").unwrap().changes.is_empty());

        // Another model: nothing until its embedding is stored, which is a change.
        assert!(walk(&catalog, 0, 10, "n").iter().all(|c| c.1.starts_with('-')));
        catalog.insert_image(&new_image(2), "n", &[0.0, 1.0]).unwrap();
        let n = walk(&catalog, head, 10, "n");
        assert_eq!(n.iter().map(|c| c.1.clone()).collect::<Vec<_>>(), [format!("+{}", id(2))]);
        // The same bytes again after a delete: the tombstone gives way to the upsert.
        catalog.insert_image(&new_image(3), "m", &[3.0, 0.5]).unwrap();
        let all = walk(&catalog, 0, 10, "m");
        assert_eq!(
            all.iter().map(|c| c.1.clone()).collect::<Vec<_>>(),
            [format!("+{}", id(1)), format!("+{}", id(2)), format!("+{}", id(3))]
        );
    }

    /// A catalog written by schema 2 (with a deleted image: keys have a gap) upgrades in place: the
    /// existing images are in the feed in key order, and new changes come after them.
    #[test]
    fn version_2_catalog_upgrades_to_the_change_feed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "wal").unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
            conn.execute_batch(
                "INSERT INTO images (id, sha256, mime, width, height, bytes, created_at, tags, caption)
                 VALUES ('cccc', 'cccc', 'image/png', 1, 1, 10, 3000, '[]', NULL),
                        ('gone', 'gone', 'image/png', 1, 1, 10, 1000, '[]', NULL),
                        ('aaaa', 'aaaa', 'image/png', 1, 1, 10, 2000, '[]', 'a red rocket');
                 DELETE FROM images WHERE id = 'gone';
                 INSERT INTO embeddings (image_key, model, dim, vector)
                 VALUES (1, 'm', 1, x'0000803f'), (3, 'm', 1, x'00000040');",
            )
            .unwrap();
        }
        let catalog = Catalog::open(&path).unwrap();
        assert_eq!(catalog.schema_version().unwrap(), 3);
        let page = catalog.changes_since(0, 10, "m").unwrap();
        let got: Vec<(u64, String, Vec<f32>)> = page
            .changes
            .iter()
            .map(|c| match c {
                Change::Upsert { seq, image, embedding, .. } => (*seq, image.id.clone(), embedding.clone()),
                Change::Delete { .. } => panic!("no tombstones before the feed existed"),
            })
            .collect();
        assert_eq!(got, vec![(1, "cccc".into(), vec![1.0]), (3, "aaaa".into(), vec![2.0])]);
        assert_eq!((page.next_cursor, page.more), (3, false));
        assert_eq!(catalog.search_captions("rocket", 10).unwrap().len(), 1, "v2 parts still work");
        // New changes number after the migrated ones, and survive a reopen.
        assert!(catalog.set_caption("cccc", Some("a cat")).unwrap());
        catalog.delete_image("aaaa").unwrap();
        drop(catalog);
        let catalog = Catalog::open(&path).unwrap();
        assert_eq!(walk(&catalog, 3, 10, "m"), vec![(4, "+cccc".into()), (5, "-aaaa".into())]);
    }

    #[test]
    fn catalog_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Catalog>();
    }
}
