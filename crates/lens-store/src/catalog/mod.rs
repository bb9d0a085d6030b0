//! The catalog: images, their embeddings and jobs in embedded SQLite.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a transaction that returned `Ok` survives
//! kill -9 and power loss. One connection behind a mutex: every method is a short critical section
//! (the server calls them from `spawn_blocking`); long scans ([`Catalog::for_each_embedding`]) take
//! the lock chunk by chunk so writers are never held up for long.
//!
//! This file holds the [`Catalog`] handle (opening, the shared connection) and the helpers several
//! parts share; each part of the API is its own `impl Catalog` block in its own file:
//!
//! - [`schema`]: the migrations, the schema version and the check that a file is a Lens catalog;
//! - [`images`]: inserting, reading, listing and deleting images, and their tags;
//! - [`captions`]: captions, their embeddings, the caption cache and keyword (FTS) search over an
//!   image's texts;
//! - [`analyses`]: image analyses by the chat model and their embeddings;
//! - [`chats`]: the history of answered chats and analyses;
//! - [`knowledge`]: the knowledge base's collections, documents, chunks and their vectors;
//! - [`vectors`]: the stored image embeddings, from which the vector index is rebuilt;
//! - [`feed`]: the change feed of browser sync and the generation counter;
//! - [`jobs`]: the job queue (claims, retries, restarts);
//! - [`keys`]: API keys, their tenants and scopes.
//!
//! Dependencies go one way: the parts use this file's [`Catalog`] and helpers; `images` uses `jobs`
//! and `vectors`; `captions`, `analyses` and `feed` use `images` and `vectors`; `chats` uses `images`' cursors; `knowledge` uses `captions`' query rules and `vectors`; `schema` uses none of them. This
//! file uses `schema` (to open a catalog) and otherwise only re-exports the parts' public items.

mod analyses;
mod captions;
mod chats;
mod feed;
mod images;
mod jobs;
mod keys;
mod knowledge;
mod schema;
mod vectors;

#[cfg(test)]
mod test_util;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction};

use crate::error::{Result, StoreError};

pub use analyses::NewAnalysis;
pub use captions::{MAX_QUERY_TERMS, MAX_TERM_CHARS, fts_query};
pub use chats::{ChatPage, ChatRecord, NewChat};
pub use feed::{Change, ChangePage};
pub use images::{Deleted, ImageAnalysis, ImagePage, ImageRecord, NewImage};
pub use jobs::{
    ANALYSIS_JOB, CAPTION_JOB, INTERRUPTED_JOB_ERROR, JobFilter, JobRecord, JobState, RESUMABLE_JOB_KINDS, RetryPolicy,
    analysis_job_params, caption_job_params,
};
pub use keys::{KeyRecord, NewKey, SECRET_PREFIX, Scope, secret_hash};
pub use knowledge::{ChunkRecord, CollectionInfo, NewDocument};
pub use schema::SCHEMA_VERSION;
use schema::{check_identity, migrate};

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
}

/// Whose images, jobs, chats and collections a read sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible<'a> {
    /// Every image (authentication off, or an admin).
    All,
    /// The images this tenant holds.
    To(&'a str),
}

impl Visible<'_> {
    /// The SQL condition on the image key column `key` (one `?` for the tenant, bound by [`Self::args`]).
    pub(super) fn condition(self, key: &str) -> String {
        match self {
            Visible::All => "1".to_string(),
            Visible::To(_) => {
                format!("EXISTS (SELECT 1 FROM image_owners o WHERE o.tenant = ? AND o.image_key = {key})")
            }
        }
    }

    /// The SQL condition on a table's own `tenant` column (one `?`, bound by [`Self::args`]).
    pub(super) fn tenant_is(self, column: &str) -> String {
        match self {
            Visible::All => "1".to_string(),
            Visible::To(_) => format!("{column} = ?"),
        }
    }

    /// `first` as text arguments, then [`Self::args`]: the arguments of a query whose `?`s before the
    /// condition take `first`.
    pub(super) fn args_after(self, first: &[&str]) -> Vec<rusqlite::types::Value> {
        let mut args: Vec<rusqlite::types::Value> = first.iter().map(|v| v.to_string().into()).collect();
        args.extend(self.args());
        args
    }

    pub(super) fn args(self) -> Vec<rusqlite::types::Value> {
        match self {
            Visible::All => Vec::new(),
            Visible::To(tenant) => vec![tenant.to_string().into()],
        }
    }
}

/// Bumps the counter [`Catalog::generation`] reads: called by every transaction that changes the
/// stored image embeddings.
fn bump_generation(tx: &Transaction<'_>) -> Result<()> {
    tx.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'", [])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::schema::APPLICATION_ID;
    use super::*;

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
