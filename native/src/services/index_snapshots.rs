//! Periodic HNSW snapshots while serving: every `--index-snapshot-interval-s`, when the catalog changed
//! since the last one, the graph is copied (under the index's read lock) and written in the background.
//! After a crash the next start loads the latest one and catches up with the catalog (`index::open`),
//! so it inserts only what came after it instead of rebuilding the whole graph.
//!
//! Snapshots keep the graph's tombstones (deleted vectors still linked), so no restart drops them:
//! when they pass a fifth of the live vectors, the same tick queues an index rebuild (the singleton
//! job of `POST /v1/index/rebuild`), which builds a graph without them while search goes on.

use std::sync::Arc;
use std::time::Instant;

use super::jobs;
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
            compact_if_needed(&lens).await;
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

/// Queues a rebuild when tombstones pass a fifth of the live vectors.
async fn compact_if_needed(lens: &Arc<Lens>) {
    let Ok(ready) = lens.ready() else { return };
    let (tombstones, live) = (ready.index.tombstones(), ready.index.len());
    if tombstones == 0 || tombstones * 5 <= live {
        return;
    }
    match jobs::create_rebuild(lens).await {
        Ok((job, _)) => tracing::info!(tombstones, live, job = %job.id, "index rebuild queued to drop tombstones"),
        Err(e) => tracing::error!(error = %e, "cannot queue the index rebuild that drops tombstones"),
    }
}
