//! Periodic HNSW snapshots while serving: every `--index-snapshot-interval-s`, when the catalog changed
//! since the last one, the graph is copied (under the index's read lock) and written in the background.
//! After a crash the next start loads the latest one and catches up with the catalog (`index::open`),
//! so it inserts only what came after it instead of rebuilding the whole graph.

use std::sync::Arc;
use std::time::Instant;

use super::lens::Lens;

/// Starts the periodic saver (once the index is loaded); nothing when the interval is off.
pub fn spawn(lens: &Arc<Lens>) {
    let Some(interval) = lens.config.index_snapshot_interval else { return };
    let lens = Arc::clone(lens);
    tokio::spawn(async move {
        let mut stopping = lens.stopping();
        // The index was just opened, and saved unless it was loaded as it was: current.
        let mut saved = lens.catalog(|c| c.generation()).await.ok();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopping.changed() => return,
            }
            if *stopping.borrow() {
                return;
            }
            let generation = match lens.catalog(|c| c.generation()).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the catalog generation; no index snapshot this time");
                    continue;
                }
            };
            if saved == Some(generation) {
                continue;
            }
            let worker = Arc::clone(&lens);
            let started = Instant::now();
            match tokio::task::spawn_blocking(move || worker.save_index()).await {
                Ok(Ok(Some(vectors))) => {
                    saved = Some(generation);
                    let seconds = started.elapsed().as_secs_f64();
                    metrics::gauge!("lens_index_snapshot_seconds").set(seconds);
                    tracing::info!(vectors, seconds, "index snapshot saved");
                }
                Ok(Ok(None)) => return, // the exact index has no snapshot
                Ok(Err(e)) => {
                    tracing::error!(error = format!("{e:#}"), "index snapshot failed; it is tried again later")
                }
                Err(e) => tracing::error!(error = %e, "the index snapshot task failed"),
            }
        }
    });
}
