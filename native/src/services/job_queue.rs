//! The workers of the per-image job queues (captions, analyses): each claims runnable jobs of its kind
//! from the catalog, runs them, and records the outcome — success, the image gone (cancelled), or a
//! failed attempt retried with back-off until the job is `dead`. What one attempt does is the queue's
//! own ([`JobQueue::attempt`]); the claiming, the leases, the sleeping and the bookkeeping are here once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use lens_store::{JobRecord, JobState, RetryPolicy, now_ms};
use tokio::sync::Notify;

use super::errors::Coded;
use super::lens::Lens;

/// Longest an idle worker sleeps before looking at the queue again (it is also woken by new jobs).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What an attempt of a job came to (an `Err` is a failed attempt: `code: message`).
pub enum Outcome {
    /// Done: the job's `result`.
    Done(serde_json::Value),
    /// The image was deleted: nothing to do.
    Gone,
}

/// One attempt of a job.
pub type Attempt = fn(Arc<Lens>, JobRecord) -> BoxFuture<'static, Result<Outcome, String>>;

/// A kind of per-image job and how its workers run.
#[derive(Clone, Copy)]
pub struct JobQueue {
    /// The catalog's job kind; also names the metrics (`lens_{kind}_jobs_total`, `lens_{kind}_job_seconds`).
    pub kind: &'static str,
    /// How long a claimed job may run before another worker may take it over.
    pub lease_ms: u64,
    /// Jobs a worker claims at once (run together: a model thread batches their work).
    pub batch: usize,
    pub retry: RetryPolicy,
    /// Notified when a job of this kind is queued.
    pub wake: fn(&Lens) -> &Notify,
    pub attempt: Attempt,
}

impl JobQueue {
    /// Starts `workers` workers.
    pub fn spawn_workers(self, lens: &Arc<Lens>, workers: usize) {
        for worker in 0..workers {
            let lens = Arc::clone(lens);
            tokio::spawn(async move { self.work(lens, worker).await });
        }
        if workers > 0 {
            tracing::info!(kind = self.kind, workers, "job workers started");
        }
    }

    /// One worker: claims up to `batch` runnable jobs, runs them together, and sleeps until the next job
    /// is due or a new one wakes it.
    async fn work(self, lens: Arc<Lens>, worker: usize) {
        let mut stopping = lens.stopping();
        loop {
            if *stopping.borrow_and_update() {
                return;
            }
            let wake = (self.wake)(&lens).notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let (kind, batch, lease) = (self.kind, self.batch, self.lease_ms);
            let claimed = lens
                .catalog(move |c| {
                    let now = now_ms();
                    let mut jobs = Vec::new();
                    while jobs.len() < batch {
                        match c.claim_next(kind, now, lease)? {
                            Some(job) => jobs.push(job),
                            None => break,
                        }
                    }
                    Ok(jobs)
                })
                .await;
            match claimed {
                Ok(jobs) if !jobs.is_empty() => {
                    // Each job on its own task: a panic fails that job's task (its lease then lets it be
                    // claimed again), never the worker.
                    let tasks: Vec<_> =
                        jobs.into_iter().map(|job| tokio::spawn(self.run(Arc::clone(&lens), job))).collect();
                    for task in tasks {
                        if let Err(e) = task.await {
                            tracing::error!(kind, worker, error = %e, "a job task failed");
                        }
                    }
                }
                Ok(_) => {
                    let due = lens.catalog(move |c| c.next_job_due(kind)).await.ok().flatten();
                    let wait = due.map_or(IDLE_POLL, |due| {
                        Duration::from_millis((due - now_ms()).clamp(5, IDLE_POLL.as_millis() as i64) as u64)
                    });
                    tokio::select! {
                        () = &mut wake => {}
                        () = tokio::time::sleep(wait) => {}
                        _ = stopping.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(kind, worker, error = e.describe(), "cannot claim jobs");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        }
    }

    /// One attempt of `job`, and its outcome recorded (fenced by the attempt number: a job cancelled or
    /// taken over meanwhile keeps its state).
    async fn run(self, lens: Arc<Lens>, job: JobRecord) {
        let started = Instant::now();
        let attempt = job.attempts;
        let outcome = (self.attempt)(Arc::clone(&lens), job.clone()).await;
        let id = job.id.clone();
        let policy = self.retry;
        let (label, recorded) = match outcome {
            Ok(Outcome::Done(result)) => {
                ("succeeded", lens.catalog(move |c| c.complete_job(&id, attempt, JobState::Succeeded, &result)).await)
            }
            Ok(Outcome::Gone) => {
                let result = serde_json::json!({"reason": "the image was deleted"});
                ("cancelled", lens.catalog(move |c| c.complete_job(&id, attempt, JobState::Cancelled, &result)).await)
            }
            Err(error) => {
                tracing::warn!(kind = self.kind, job = job.id, attempt, error, "job attempt failed");
                let after = lens.catalog(move |c| c.fail_attempt(&id, attempt, &error, now_ms(), &policy)).await;
                match after {
                    Ok(Some(JobState::Dead)) => ("dead", Ok(true)),
                    Ok(Some(_)) => ("retried", Ok(true)),
                    Ok(None) => ("superseded", Ok(false)),
                    Err(e) => ("retried", Err(e)),
                }
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::info!(kind = self.kind, job = job.id, attempt, "job was cancelled or taken over"),
            Err(e) => {
                tracing::error!(kind = self.kind, job = job.id, error = e.describe(), "cannot record a job's outcome")
            }
        }
        metrics::counter!(format!("lens_{}_jobs_total", self.kind), "outcome" => label).increment(1);
        metrics::histogram!(format!("lens_{}_job_seconds", self.kind)).record(started.elapsed().as_secs_f64());
    }
}
