//! Orphan blobs: image bytes whose catalog row never committed (the process died between an upload's
//! blob writes and its transaction, or a failed request could not take its blobs back). The sweep walks
//! the blob store a page at a time and removes image blobs with no row that are older than the grace
//! period; `lens serve` runs it at start and then periodically.
//!
//! An upload holds [`Lens::blob_commits`] (shared) from its first blob write until its transaction ends,
//! and the sweep holds it (exclusive) while it checks a page's rows and removes its orphans, so a blob an
//! upload is about to commit, or has just written again, is never taken. The grace period covers writers
//! outside this process.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lens_store::StoreError;

use super::lens::Lens;

/// Blobs listed and checked at once.
const PAGE: usize = 500;

/// What one sweep saw and did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Swept {
    /// Image blobs looked at.
    pub blobs: u64,
    /// Those removed: no row, older than the grace period.
    pub removed: u64,
}

/// Image blobs are named by their sha256 (64 lowercase hex characters); anything else is not ours.
fn is_image_key(key: &str) -> bool {
    key.len() == 64 && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One pass over the whole blob store: removes image blobs with no catalog row written more than `grace`
/// ago.
pub async fn sweep(lens: &Lens, grace: Duration) -> Result<Swept, StoreError> {
    let mut swept = Swept::default();
    let mut after: Option<String> = None;
    loop {
        let page = lens.blobs.list(after.as_deref(), PAGE).await?;
        let cutoff = SystemTime::now().checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let images: Vec<_> = page.blobs.iter().filter(|b| is_image_key(&b.key)).collect();
        swept.blobs += images.len() as u64;
        let old: Vec<String> = images.iter().filter(|b| b.modified <= cutoff).map(|b| b.key.clone()).collect();
        if !old.is_empty() {
            let _exclusive = lens.blob_commits.write().await;
            let keys = old.clone();
            let stored = lens.catalog(move |c| c.stored_sha256s(&keys)).await?;
            for key in old.iter().filter(|k| !stored.contains(*k)) {
                lens.blobs.delete(key).await?;
                swept.removed += 1;
                metrics::counter!("lens_orphan_blobs_removed_total").increment(1);
                tracing::info!(sha256 = key, "orphan blob removed (no catalog row)");
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(swept),
        }
    }
}

/// Sweeps now, then every `--orphan-sweep-interval-s`, until the service stops.
pub fn spawn_sweeper(lens: &Arc<Lens>) {
    let lens = Arc::clone(lens);
    let settings = lens.config.orphans;
    tokio::spawn(async move {
        let mut stopping = lens.stopping();
        loop {
            if *stopping.borrow_and_update() {
                return;
            }
            match sweep(&lens, settings.grace).await {
                Ok(swept) if swept.removed > 0 => {
                    tracing::warn!(removed = swept.removed, blobs = swept.blobs, "orphan blobs removed")
                }
                Ok(swept) => tracing::debug!(blobs = swept.blobs, "no orphan blobs"),
                Err(e) => tracing::error!(error = %e, "the orphan blob sweep failed; it runs again later"),
            }
            tokio::select! {
                _ = tokio::time::sleep(settings.interval) => {}
                _ = stopping.changed() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_names_are_image_blobs() {
        assert!(is_image_key(&"ab".repeat(32)));
        assert!(!is_image_key(&"AB".repeat(32)));
        assert!(!is_image_key(&"ab".repeat(31)));
        assert!(!is_image_key("abcd-thumbnail"));
    }
}
