//! The [`BlobStore`] trait and the local-directory store.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::error::{Result, StoreError};

/// Where image bytes (and other blobs) live. Keys are content hashes (sha256 hex, maybe with a
/// suffix), so a put of an existing key writes the same bytes again.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key`; durable when `Ok` (local: temp file in the same directory,
    /// write, fsync, rename, fsync of the directory). Overwrites.
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<()>;
    /// The bytes under `key`, `None` when there are none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    async fn exists(&self, key: &str) -> Result<bool>;
    /// Removes `key`; a missing key is `Ok`.
    async fn delete(&self, key: &str) -> Result<()>;
    /// A time-limited URL a client can GET directly (S3 presigned), or `None` when the store has
    /// none (local).
    async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>>;
    /// Up to `limit` blobs with keys after `after` (from the first when `None`), in key order, with when
    /// each was last written: how the orphan sweep walks the store. Names that are not valid keys (other
    /// tools' files) and temp files are skipped.
    async fn list(&self, after: Option<&str>, limit: usize) -> Result<BlobPage>;
    /// e.g. `local:/path` or `s3://bucket/prefix (endpoint …)`, for logs and info endpoints.
    fn describe(&self) -> String;
}

/// One page of [`BlobStore::list`].
#[derive(Debug, Clone, Default)]
pub struct BlobPage {
    pub blobs: Vec<BlobEntry>,
    /// Pass as `after` for the next page; `None`: this was the last.
    pub next: Option<String>,
}

/// A stored blob's key and when it was last written.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobEntry {
    pub key: String,
    pub modified: SystemTime,
}

/// Longest key accepted (file-name limit of common file systems).
const MAX_KEY_LEN: usize = 200;
/// Temp files are `.<key>.tmp-<random>`; keys cannot start with `.`, so they never collide.
const TMP_MARKER: &str = ".tmp-";

/// Checks that `key` can name a blob: 4 to 200 characters of `[0-9a-zA-Z._-]`, not starting with
/// `.` (which also rules out `.` and `..`). Both stores apply it, so they accept the same keys.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| Err(StoreError::InvalidInput(format!("blob key {key:?}: {reason}")));
    if key.len() < 4 || key.len() > MAX_KEY_LEN {
        return bad(&format!("must be 4 to {MAX_KEY_LEN} characters long"));
    }
    if key.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Blobs in a local directory, fanned out as `dir/ab/cd/<key>` (the key's first four characters).
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    dir: PathBuf,
}

impl LocalBlobStore {
    /// Opens (creating it if needed) the store at `dir`, and removes temp files a crash left behind.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let dir = dir.canonicalize().map_err(|e| StoreError::io(dir, e))?;
        let store = LocalBlobStore { dir };
        store.remove_temp_files()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `key` lives (after validating it).
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.dir.join(&key[0..2]).join(&key[2..4]).join(key))
    }

    fn remove_temp_files(&self) -> Result<()> {
        for level1 in read_dir_if_exists(&self.dir)? {
            if !level1.is_dir() {
                continue;
            }
            for level2 in read_dir_if_exists(&level1)? {
                if !level2.is_dir() {
                    continue;
                }
                for file in read_dir_if_exists(&level2)? {
                    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if name.starts_with('.') && name.contains(TMP_MARKER) {
                        fs::remove_file(&file).map_err(|e| StoreError::io(&file, e))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn put_blocking(path: &Path, bytes: &[u8]) -> Result<()> {
        let leaf = path.parent().expect("blob paths have a parent");
        if !leaf.is_dir() {
            fs::create_dir_all(leaf).map_err(|e| StoreError::io(leaf, e))?;
            // Make the new directory entries themselves durable.
            let level1 = leaf.parent().expect("fan-out directories have a parent");
            sync_dir(level1)?;
            sync_dir(level1.parent().expect("fan-out directories have a parent"))?;
        }
        let name = path.file_name().and_then(|n| n.to_str()).expect("validated keys are UTF-8");
        let tmp = leaf.join(format!(".{name}{TMP_MARKER}{:016x}", rand::random::<u64>()));
        let written = (|| -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io(&tmp, e));
        }
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io(path, e));
        }
        sync_dir(leaf)
    }

    fn list_blocking(&self, after: Option<&str>, limit: usize) -> Result<BlobPage> {
        if let Some(after) = after {
            validate_key(after)?;
        }
        // The fan-out directories are the key's first two pairs of characters, so walking them in name
        // order walks the keys in order, and those before `after` are skipped a directory at a time.
        let start = after.map(|a| (&a[0..2], &a[2..4]));
        let mut page = BlobPage::default();
        for (level1, dir1) in sorted_names(&self.dir)? {
            if level1.len() != 2 || start.is_some_and(|(s1, _)| level1.as_str() < s1) || !dir1.is_dir() {
                continue;
            }
            for (level2, dir2) in sorted_names(&dir1)? {
                if level2.len() != 2 || start.is_some_and(|s| (level1.as_str(), level2.as_str()) < s) || !dir2.is_dir()
                {
                    continue;
                }
                for (key, path) in sorted_names(&dir2)? {
                    let in_place = key.starts_with(&level1) && key[2..].starts_with(&level2);
                    if validate_key(&key).is_err() || !in_place || after.is_some_and(|a| key.as_str() <= a) {
                        continue;
                    }
                    let modified = match fs::metadata(&path) {
                        Ok(meta) if meta.is_file() => meta.modified().map_err(|e| StoreError::io(&path, e))?,
                        Ok(_) => continue,
                        // Deleted since the directory was read.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(StoreError::io(&path, e)),
                    };
                    page.blobs.push(BlobEntry { key, modified });
                    if page.blobs.len() == limit {
                        page.next = page.blobs.last().map(|b| b.key.clone());
                        return Ok(page);
                    }
                }
            }
        }
        Ok(page)
    }

    fn delete_blocking(path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => sync_dir(path.parent().expect("blob paths have a parent")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }
}

fn read_dir_if_exists(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path()).map_err(|err| StoreError::io(dir, err))).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

/// The UTF-8 names in `dir` and their paths, sorted by name.
fn sorted_names(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut names: Vec<(String, PathBuf)> = read_dir_if_exists(dir)?
        .into_iter()
        .filter_map(|path| Some((path.file_name()?.to_str()?.to_string(), path)))
        .collect();
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(names)
}

/// fsync of a directory, so that a rename or a new entry in it survives power loss.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, e))
}

/// Runs file-system work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::io("<blob store task>", io::Error::other(format!("task failed: {e}"))))?
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<()> {
        let path = self.path_of(key)?;
        blocking(move || Self::put_blocking(&path, &bytes)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = self.path_of(key)?;
        blocking(move || match fs::read(&path) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        let path = self.path_of(key)?;
        blocking(move || match fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io(&path, e)),
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        blocking(move || Self::delete_blocking(&path)).await
    }

    async fn presigned_get(&self, key: &str, _ttl: Duration) -> Result<Option<String>> {
        validate_key(key)?;
        Ok(None)
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<BlobPage> {
        let (store, after) = (self.clone(), after.map(str::to_string));
        blocking(move || store.list_blocking(after.as_deref(), limit.max(1))).await
    }

    fn describe(&self) -> String {
        format!("local:{}", self.dir.display())
    }
}
