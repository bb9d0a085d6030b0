//! The on-disk schema: the ordered migration steps, the schema version they lead to, and the
//! identity check that keeps Lens from writing into a SQLite file that is not its catalog. Opening
//! a catalog ([`Catalog::open`](super::Catalog::open)) runs both, before anything else touches it.
//!
//! [`MIGRATIONS`] is append only: a shipped step never changes, so every catalog file ends up with
//! the same schema whichever version created it.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};

/// The schema version this build writes (`PRAGMA user_version`); the number of migration steps.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// `PRAGMA application_id` of a Lens catalog ("LENS"), so that another SQLite file is refused.
pub(super) const APPLICATION_ID: i32 = 0x4c45_4e53;

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
    // 4: image analysis by the chat model: the answer, the prompt it answered, the model and when, on the
    // image; its CLIP text embedding beside the caption's. Keyword search covers an image's texts (caption
    // and analysis) in one FTS5 table, so one bm25 ranks both; an analysis change is a change of the feed.
    r#"
    ALTER TABLE images ADD COLUMN analysis TEXT;
    ALTER TABLE images ADD COLUMN analysis_prompt TEXT;
    ALTER TABLE images ADD COLUMN analysis_model TEXT;
    ALTER TABLE images ADD COLUMN analyzed_at INTEGER;    -- ms

    CREATE TABLE analysis_embeddings (
        image_key   INTEGER NOT NULL REFERENCES images (key) ON DELETE CASCADE,
        model       TEXT    NOT NULL,
        dim         INTEGER NOT NULL,
        vector      BLOB    NOT NULL,                  -- dim little-endian f32
        PRIMARY KEY (image_key, model)
    );

    DROP TRIGGER images_fts_insert;
    DROP TRIGGER images_fts_delete;
    DROP TRIGGER images_fts_update;
    DROP TABLE captions_fts;
    CREATE VIRTUAL TABLE image_texts_fts USING fts5 (
        caption, analysis, content = 'images', content_rowid = 'key',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER images_texts_insert AFTER INSERT ON images
        WHEN new.caption IS NOT NULL OR new.analysis IS NOT NULL BEGIN
        INSERT INTO image_texts_fts (rowid, caption, analysis) VALUES (new.key, new.caption, new.analysis);
    END;
    CREATE TRIGGER images_texts_delete AFTER DELETE ON images
        WHEN old.caption IS NOT NULL OR old.analysis IS NOT NULL BEGIN
        INSERT INTO image_texts_fts (image_texts_fts, rowid, caption, analysis)
            VALUES ('delete', old.key, old.caption, old.analysis);
    END;
    CREATE TRIGGER images_texts_update AFTER UPDATE OF caption, analysis ON images BEGIN
        INSERT INTO image_texts_fts (image_texts_fts, rowid, caption, analysis)
            SELECT 'delete', old.key, old.caption, old.analysis
            WHERE old.caption IS NOT NULL OR old.analysis IS NOT NULL;
        INSERT INTO image_texts_fts (rowid, caption, analysis)
            SELECT new.key, new.caption, new.analysis WHERE new.caption IS NOT NULL OR new.analysis IS NOT NULL;
    END;
    INSERT INTO image_texts_fts (image_texts_fts) VALUES ('rebuild');

    DROP TRIGGER images_sync_update;
    CREATE TRIGGER images_sync_update AFTER UPDATE OF caption, tags, analysis ON images
        WHEN old.caption IS NOT new.caption OR old.tags IS NOT new.tags OR old.analysis IS NOT new.analysis BEGIN
        UPDATE meta SET value = value + 1 WHERE name = 'sync_seq';
        UPDATE images SET seq = (SELECT value FROM meta WHERE name = 'sync_seq') WHERE key = new.key;
    END;
    "#,
    // 5: the history of answered chats and analyses, by the request's user.
    r#"
    CREATE TABLE chats (
        id              TEXT    PRIMARY KEY,           -- the answer's id (chatcmpl-...)
        kind            TEXT    NOT NULL CHECK (kind IN ('chat', 'analysis')),
        user            TEXT,                          -- the request's `user`
        model           TEXT    NOT NULL,
        messages        TEXT    NOT NULL,              -- JSON: the conversation, images as references
        answer          TEXT    NOT NULL,
        finish_reason   TEXT    NOT NULL,
        prompt_tokens   INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        created_at      INTEGER NOT NULL               -- ms
    );
    CREATE INDEX chats_newest ON chats (created_at DESC);
    CREATE INDEX chats_by_user ON chats (user, created_at DESC);
    "#,
    // 6: the knowledge base: named collections of text documents, cut into chunks that are embedded (per
    // text model) and keyword-indexed (FTS5, kept by triggers; deleting a collection or a document cascades).
    r#"
    CREATE TABLE collections (
        name        TEXT    PRIMARY KEY,
        created_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE documents (
        key         INTEGER PRIMARY KEY,
        collection  TEXT    NOT NULL REFERENCES collections (name) ON DELETE CASCADE,
        id          TEXT    NOT NULL,
        title       TEXT,
        text        TEXT    NOT NULL,
        metadata    TEXT,                              -- JSON object
        created_at  INTEGER NOT NULL,
        UNIQUE (collection, id)
    );
    CREATE TABLE chunks (
        key         INTEGER PRIMARY KEY,
        document_key INTEGER NOT NULL REFERENCES documents (key) ON DELETE CASCADE,
        ordinal     INTEGER NOT NULL,
        text        TEXT    NOT NULL
    );
    CREATE INDEX chunks_by_document ON chunks (document_key);
    CREATE TABLE chunk_embeddings (
        chunk_key   INTEGER NOT NULL REFERENCES chunks (key) ON DELETE CASCADE,
        model       TEXT    NOT NULL,
        dim         INTEGER NOT NULL,
        vector      BLOB    NOT NULL,
        PRIMARY KEY (chunk_key, model)
    );
    CREATE VIRTUAL TABLE chunks_fts USING fts5 (
        text, content = 'chunks', content_rowid = 'key',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, text) VALUES (new.key, new.text);
    END;
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.key, old.text);
    END;
    "#,
    // 7: API keys (only the secret's sha256 is kept) and what belongs to whom: the tenants holding an
    // image (identical bytes are one image held by several), and the tenant of a job, a chat, a collection.
    // NULL tenant: made with authentication off, seen only without it or by an admin.
    r#"
    CREATE TABLE api_keys (
        id              TEXT    PRIMARY KEY,           -- key_ + 16 hex, public
        name            TEXT    NOT NULL,
        tenant          TEXT    NOT NULL,
        scope           TEXT    NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
        secret_sha256   TEXT    NOT NULL UNIQUE,
        rate            REAL,                          -- requests/s; NULL: the server's default
        created_at      INTEGER NOT NULL,              -- ms
        revoked_at      INTEGER
    );
    CREATE TABLE image_owners (
        tenant      TEXT    NOT NULL,
        image_key   INTEGER NOT NULL REFERENCES images (key) ON DELETE CASCADE,
        PRIMARY KEY (tenant, image_key)
    ) WITHOUT ROWID;
    CREATE INDEX image_owners_by_image ON image_owners (image_key);
    ALTER TABLE jobs ADD COLUMN tenant TEXT;
    ALTER TABLE chats ADD COLUMN tenant TEXT;
    ALTER TABLE collections ADD COLUMN tenant TEXT;
    "#,
    // 8: the ingest safety check's verdict, and whether it hides the image from search and sync.
    r#"
    ALTER TABLE images ADD COLUMN moderation TEXT;     -- JSON: flagged, scores, threshold
    ALTER TABLE images ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
    "#,
];

/// Refuses SQLite files that are not Lens catalogs (before anything is written to them).
pub(super) fn check_identity(conn: &Connection, name: &str) -> Result<()> {
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
pub(super) fn migrate(conn: &mut Connection, name: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::test_util::walk;
    use crate::catalog::{CAPTION_JOB, Catalog, Change, JobState, RetryPolicy};
    use crate::time::now_ms;

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
        assert_eq!(SCHEMA_VERSION, 8);
        let a = catalog.image("aaaa").unwrap().unwrap();
        assert_eq!(
            (a.caption.as_deref(), a.tags.as_slice(), a.colors.as_ref()),
            (Some("a red rocket"), &["t".to_string()][..], None)
        );
        assert_eq!(catalog.embedding(a.key, "m").unwrap(), Some(vec![1.0]));
        assert_eq!(catalog.generation().unwrap(), 7);
        assert_eq!(catalog.search_texts("rocket", 10).unwrap().iter().map(|h| h.0).collect::<Vec<_>>(), vec![a.key]);
        let old = catalog.job("job_old").unwrap().unwrap();
        assert_eq!(
            (old.state, old.params.clone(), old.attempts),
            (JobState::Succeeded, serde_json::json!({"urls": 2}), 1)
        );
        assert_eq!(catalog.fail_interrupted_jobs().unwrap(), 1);
        assert_eq!(catalog.job("job_cut").unwrap().unwrap().state, JobState::Failed);
        // The new parts work on the upgraded file.
        assert!(catalog.set_caption("bbbb", Some("a blue boat")).unwrap());
        assert_eq!(catalog.search_texts("boat", 10).unwrap().len(), 1);
        let job = catalog.enqueue_job(CAPTION_JOB, "bbbb", &serde_json::json!(null)).unwrap().unwrap();
        let claimed = catalog.claim_next(CAPTION_JOB, now_ms(), 1000).unwrap().unwrap();
        assert_eq!(claimed.id, job.id);
        let policy = RetryPolicy { max_attempts: 1, ..Default::default() };
        assert_eq!(catalog.fail_attempt(&job.id, 1, "x", now_ms(), &policy).unwrap(), Some(JobState::Dead));
        drop(catalog);
        // And reopening does not migrate again.
        assert_eq!(Catalog::open(&path).unwrap().list_jobs(10).unwrap().len(), 3);
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
        assert_eq!(catalog.schema_version().unwrap(), SCHEMA_VERSION);
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
        assert_eq!(catalog.search_texts("rocket", 10).unwrap().len(), 1, "v2 parts still work");
        // New changes number after the migrated ones, and survive a reopen.
        assert!(catalog.set_caption("cccc", Some("a cat")).unwrap());
        catalog.delete_image("aaaa").unwrap();
        drop(catalog);
        let catalog = Catalog::open(&path).unwrap();
        assert_eq!(walk(&catalog, 3, 10, "m"), vec![(4, "+cccc".into()), (5, "-aaaa".into())]);
    }
}
