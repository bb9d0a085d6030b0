//! Jobs: lifecycle, restarts, and caption jobs with retries, leases and fencing.

use std::collections::HashSet;

use lens_store::{CAPTION_JOB, Catalog, JobFilter, JobState, NewImage, RetryPolicy, StoreError};
use serde_json::json;

use crate::common::{MODEL, new_image, vector};

#[test]
fn jobs_lifecycle() {
    let catalog = Catalog::open_in_memory().unwrap();
    let job = catalog.create_job("ingest", 10, &json!({"folder": "/photos"})).unwrap();
    assert!(job.id.starts_with("job_") && job.id.len() == 20, "{}", job.id);
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(catalog.job(&job.id).unwrap().unwrap().params, json!({"folder": "/photos"}));

    catalog.start_job(&job.id).unwrap();
    let running = catalog.job(&job.id).unwrap().unwrap();
    assert_eq!((running.state, running.attempts), (JobState::Running, 1));
    assert!(matches!(catalog.start_job(&job.id), Err(StoreError::InvalidInput(_))));

    catalog.job_progress(&job.id, 7, 1).unwrap();
    let progressed = catalog.job(&job.id).unwrap().unwrap();
    assert_eq!((progressed.total, progressed.done, progressed.failed), (10, 7, 1));

    assert!(matches!(
        catalog.finish_job(&job.id, JobState::Running, None, &json!(null)),
        Err(StoreError::InvalidInput(_))
    ));
    catalog.finish_job(&job.id, JobState::Succeeded, None, &json!({"inserted": 6})).unwrap();
    let done = catalog.job(&job.id).unwrap().unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result, json!({"inserted": 6}));
    assert_eq!(done.error, None);
    assert_eq!(serde_json::to_value(&done).unwrap()["state"], "succeeded");

    let failed = catalog.create_job("reindex", 0, &json!(null)).unwrap();
    catalog.start_job(&failed.id).unwrap();
    catalog.finish_job(&failed.id, JobState::Failed, Some("model missing"), &json!(null)).unwrap();
    let failed = catalog.job(&failed.id).unwrap().unwrap();
    assert_eq!((failed.state, failed.error.as_deref()), (JobState::Failed, Some("model missing")));

    let third = catalog.create_job("ingest", 1, &json!([])).unwrap();
    let listed: Vec<String> = catalog.list_jobs(10).unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(listed, vec![third.id.clone(), failed.id.clone(), job.id.clone()]);
    assert_eq!(catalog.list_jobs(1).unwrap().len(), 1);

    assert!(catalog.job("job_missing").unwrap().is_none());
    assert!(matches!(catalog.start_job("job_missing"), Err(StoreError::NotFound(_))));
    assert!(matches!(catalog.job_progress("job_missing", 1, 0), Err(StoreError::NotFound(_))));
    assert!(matches!(
        catalog.finish_job("job_missing", JobState::Failed, None, &json!(null)),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn interrupted_jobs_fail_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let (queued, running, finished) = {
        let catalog = Catalog::open(&path).unwrap();
        let queued = catalog.create_job("ingest", 3, &json!(null)).unwrap();
        let running = catalog.create_job("ingest", 3, &json!(null)).unwrap();
        catalog.start_job(&running.id).unwrap();
        let finished = catalog.create_job("ingest", 3, &json!(null)).unwrap();
        catalog.start_job(&finished.id).unwrap();
        catalog.finish_job(&finished.id, JobState::Succeeded, None, &json!(null)).unwrap();
        (queued.id, running.id, finished.id)
    };
    let catalog = Catalog::open(&path).unwrap();
    assert_eq!(catalog.fail_interrupted_jobs().unwrap(), 2);
    for id in [&queued, &running] {
        let job = catalog.job(id).unwrap().unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert_eq!(job.error.as_deref(), Some(lens_store::INTERRUPTED_JOB_ERROR));
    }
    assert_eq!(catalog.job(&finished).unwrap().unwrap().state, JobState::Succeeded);
    assert_eq!(catalog.fail_interrupted_jobs().unwrap(), 0);
}

fn captioned(seed: &str) -> NewImage {
    NewImage { caption_options: Some(json!({"num_beams": 3})), ..new_image(seed, &[]) }
}

#[test]
fn retry_delays_double_from_the_base_with_bounded_jitter_and_a_cap() {
    let policy = RetryPolicy { base_ms: 100, max_ms: 1000, max_attempts: 10 };
    for id in ["job_a", "job_b", "job_0123456789abcdef"] {
        for (attempts, base) in [(1u32, 100u64), (2, 200), (3, 400), (4, 800)] {
            let d = policy.delay_ms(id, attempts);
            assert!((base..=(base + base / 10).min(1000)).contains(&d), "{id} attempt {attempts}: {d}");
            assert_eq!(d, policy.delay_ms(id, attempts), "deterministic");
        }
        for attempts in [5, 6, 30, 64, 1000, u32::MAX] {
            assert_eq!(policy.delay_ms(id, attempts), 1000, "capped at attempt {attempts}");
        }
    }
    // Jobs that fail together do not all come back at the same millisecond.
    let spread: HashSet<u64> = (0..50).map(|i| policy.delay_ms(&format!("job_{i}"), 3)).collect();
    assert!(spread.len() > 10, "{spread:?}");
    let huge = RetryPolicy { base_ms: u64::MAX, max_ms: u64::MAX, max_attempts: 1 };
    assert_eq!(huge.delay_ms("job", 40), u64::MAX);
}

#[test]
fn a_failing_job_backs_off_then_goes_dead_with_its_last_error() {
    let catalog = Catalog::open_in_memory().unwrap();
    let policy = RetryPolicy { base_ms: 1000, max_ms: 60_000, max_attempts: 3 };
    let job = catalog.enqueue_job(CAPTION_JOB, "img1", &json!({"image": "img1"})).unwrap().unwrap();
    assert_eq!(job.state, JobState::Queued);
    assert!(catalog.enqueue_job(CAPTION_JOB, "img1", &json!({})).unwrap().is_none(), "one pending job per subject");
    let mut now = lens_store::now_ms();
    for attempt in 1..=3u32 {
        let claimed = catalog.claim_next(CAPTION_JOB, now, 60_000).unwrap().expect("runnable");
        assert_eq!(
            (claimed.id.as_str(), claimed.state, claimed.attempts),
            (job.id.as_str(), JobState::Running, attempt)
        );
        assert!(claimed.started_at.is_some());
        assert!(catalog.claim_next(CAPTION_JOB, now, 60_000).unwrap().is_none(), "claimed once");
        let state = catalog.fail_attempt(&job.id, attempt, &format!("boom {attempt}"), now, &policy).unwrap();
        let after = catalog.job(&job.id).unwrap().unwrap();
        assert_eq!(after.last_error.as_deref(), Some(format!("boom {attempt}").as_str()));
        if attempt < 3 {
            assert_eq!(state, Some(JobState::Queued));
            let delay = policy.delay_ms(&job.id, attempt) as i64;
            assert!(delay >= 1000 << (attempt - 1));
            assert_eq!(after.next_run_at, Some(lens_store::format_rfc3339_ms(now + delay)));
            assert!(catalog.claim_next(CAPTION_JOB, now + delay - 1, 60_000).unwrap().is_none(), "backing off");
            assert_eq!(catalog.next_job_due(CAPTION_JOB).unwrap(), Some(now + delay));
            now += delay;
        } else {
            assert_eq!(state, Some(JobState::Dead));
            assert_eq!(after.state, JobState::Dead);
            assert_eq!(after.attempts, 3);
            assert_eq!(after.error.as_deref(), Some("boom 3"));
        }
    }
    // Dead jobs are never claimed again, and are listed by the dead-letter filter.
    assert!(catalog.claim_next(CAPTION_JOB, now + 10_000_000, 60_000).unwrap().is_none());
    assert_eq!(catalog.next_job_due(CAPTION_JOB).unwrap(), None);
    let dead = catalog
        .list_jobs_where(10, &JobFilter { kind: Some(CAPTION_JOB), state: Some(JobState::Dead), tenant: None })
        .unwrap();
    assert_eq!(dead.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec![job.id.as_str()]);
    assert!(
        catalog.list_jobs_where(10, &JobFilter { kind: Some("ingest"), state: None, tenant: None }).unwrap().is_empty()
    );
    let counts = catalog.count_jobs(CAPTION_JOB).unwrap();
    assert_eq!(counts.iter().find(|(s, _)| *s == JobState::Dead).unwrap().1, 1);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1);
    // The subject may be queued again once nothing is pending.
    assert!(catalog.enqueue_job(CAPTION_JOB, "img1", &json!({})).unwrap().is_some());
}

#[test]
fn completion_and_failure_are_fenced_by_the_attempt() {
    let catalog = Catalog::open_in_memory().unwrap();
    let policy = RetryPolicy { base_ms: 10, max_ms: 10, max_attempts: 5 };
    let job = catalog.enqueue_job(CAPTION_JOB, "x", &json!(null)).unwrap().unwrap();
    let now = lens_store::now_ms();
    let first = catalog.claim_next(CAPTION_JOB, now, 100).unwrap().unwrap();
    // The lease passes: another worker takes the job; the first one's outcome is refused.
    let second = catalog.claim_next(CAPTION_JOB, now + 100, 100).unwrap().unwrap();
    assert_eq!((first.attempts, second.attempts), (1, 2));
    assert!(!catalog.complete_job(&job.id, 1, JobState::Succeeded, &json!({"caption": "late"})).unwrap());
    assert_eq!(catalog.fail_attempt(&job.id, 1, "late", now, &policy).unwrap(), None);
    assert!(catalog.complete_job(&job.id, 2, JobState::Succeeded, &json!({"caption": "a cat"})).unwrap());
    let done = catalog.job(&job.id).unwrap().unwrap();
    assert_eq!((done.state, done.done, done.result.clone()), (JobState::Succeeded, 1, json!({"caption": "a cat"})));
    assert!(!catalog.complete_job(&job.id, 2, JobState::Succeeded, &json!(null)).unwrap(), "only once");
    assert!(matches!(catalog.complete_job(&job.id, 2, JobState::Dead, &json!(null)), Err(StoreError::InvalidInput(_))));
}

#[test]
fn two_claimers_on_two_connections_never_share_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let catalog = Catalog::open(&path).unwrap();
    let n = 120;
    for i in 0..n {
        catalog.enqueue_job(CAPTION_JOB, &format!("img{i}"), &json!({"i": i})).unwrap().unwrap();
    }
    let claimed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            // Separate connections: exclusivity comes from SQLite's write lock, not our mutex.
            let mine = Catalog::open(&path).unwrap();
            let claimed = &claimed;
            scope.spawn(move || {
                while let Some(job) = mine.claim_next(CAPTION_JOB, lens_store::now_ms(), 600_000).unwrap() {
                    assert!(mine.complete_job(&job.id, job.attempts, JobState::Succeeded, &json!(null)).unwrap());
                    claimed.lock().unwrap().push(job.id);
                }
            });
        }
    });
    let claimed = claimed.into_inner().unwrap();
    assert_eq!(claimed.len(), n);
    assert_eq!(claimed.iter().collect::<HashSet<_>>().len(), n, "a job was claimed twice");
    let counts = catalog.count_jobs(CAPTION_JOB).unwrap();
    assert_eq!(counts.iter().find(|(s, _)| *s == JobState::Succeeded).unwrap().1, n as u64);
}

#[test]
fn restart_requeues_running_caption_jobs_and_fails_only_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let (queued, running, poison, ingest, retrying) = {
        let catalog = Catalog::open(&path).unwrap();
        let ingest = catalog.create_job("ingest", 3, &json!(null)).unwrap();
        catalog.start_job(&ingest.id).unwrap();
        let now = lens_store::now_ms();
        let poison = catalog.enqueue_job(CAPTION_JOB, "p", &json!(null)).unwrap().unwrap();
        let policy = RetryPolicy { base_ms: 1, max_ms: 1, max_attempts: 3 };
        for attempt in 1..=2 {
            let job = catalog.claim_next(CAPTION_JOB, now + 10 * attempt, 600_000).unwrap().unwrap();
            catalog.fail_attempt(&job.id, job.attempts, "oom", now + 10 * attempt, &policy).unwrap();
        }
        catalog.claim_next(CAPTION_JOB, now + 100, 600_000).unwrap().unwrap(); // third attempt, then the crash
        let running = catalog.enqueue_job(CAPTION_JOB, "r", &json!(null)).unwrap().unwrap();
        catalog.claim_next(CAPTION_JOB, now + 100, 600_000).unwrap().unwrap();
        let retrying = catalog.enqueue_job(CAPTION_JOB, "t", &json!(null)).unwrap().unwrap();
        let job = catalog.claim_next(CAPTION_JOB, now + 100, 600_000).unwrap().unwrap();
        catalog.fail_attempt(&job.id, 1, "flaky", now + 100, &RetryPolicy::default()).unwrap();
        let queued = catalog.enqueue_job(CAPTION_JOB, "q", &json!(null)).unwrap().unwrap();
        (queued.id, running.id, poison.id, ingest.id, retrying.id)
    }; // the process "dies": nothing else is written
    let catalog = Catalog::open(&path).unwrap();
    assert_eq!(catalog.fail_interrupted_jobs().unwrap(), 1, "only the ingest job");
    assert_eq!(catalog.job(&ingest).unwrap().unwrap().state, JobState::Failed);
    assert_eq!(catalog.requeue_interrupted_jobs(CAPTION_JOB, 3).unwrap(), (1, 1));
    let job = |id: &str| catalog.job(id).unwrap().unwrap();
    assert_eq!((job(&running).state, job(&running).attempts), (JobState::Queued, 1));
    assert_eq!(job(&running).last_error.as_deref(), Some(lens_store::INTERRUPTED_JOB_ERROR));
    assert_eq!((job(&poison).state, job(&poison).attempts), (JobState::Dead, 3), "a job that keeps crashing ends dead");
    assert_eq!((job(&queued).state, job(&queued).attempts), (JobState::Queued, 0));
    assert_eq!(job(&retrying).state, JobState::Queued);
    assert_eq!(job(&retrying).last_error.as_deref(), Some("flaky"), "its back-off is kept");
    // Everything queued runs again; the restarted one at once.
    let now = lens_store::now_ms();
    let first = catalog.claim_next(CAPTION_JOB, now, 600_000).unwrap().unwrap();
    assert_eq!((first.id.as_str(), first.attempts), (running.as_str(), 2));
    assert_eq!(catalog.claim_next(CAPTION_JOB, now, 600_000).unwrap().unwrap().id, queued);
    assert!(catalog.claim_next(CAPTION_JOB, now, 600_000).unwrap().is_none(), "the retry waits for its back-off");
    assert_eq!(catalog.requeue_interrupted_jobs(CAPTION_JOB, 3).unwrap(), (2, 0));
}

#[test]
fn ingest_queues_one_caption_job_and_delete_withdraws_it() {
    let catalog = Catalog::open_in_memory().unwrap();
    let (a, created) = catalog.insert_image(&captioned("a"), MODEL, &vector(1.0, 4)).unwrap();
    assert!(created);
    let jobs = catalog.list_jobs_where(10, &JobFilter { kind: Some(CAPTION_JOB), state: None, tenant: None }).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].params, json!({"image": a.id, "options": {"num_beams": 3}}));
    // The same bytes again: no second job while one is pending.
    catalog.insert_image(&captioned("a"), MODEL, &vector(1.0, 4)).unwrap();
    assert_eq!(catalog.list_jobs(10).unwrap().len(), 1);
    // No caption options: no job.
    catalog.insert_image(&new_image("plain", &[]), MODEL, &vector(1.0, 4)).unwrap();
    assert_eq!(catalog.list_jobs(10).unwrap().len(), 1);
    // An existing image without a caption and with no pending job gets one when ingested again.
    let (plain, created) = catalog.insert_image(&captioned("plain"), MODEL, &vector(1.0, 4)).unwrap();
    assert!(!created);
    assert_eq!(catalog.list_jobs(10).unwrap().len(), 2);

    // Delete: a never-started job disappears; a running one is cancelled and its completion refused.
    catalog.delete_image(&a.id).unwrap().unwrap();
    let left = catalog.list_jobs(10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].params["image"], plain.id.as_str());
    let job = catalog.claim_next(CAPTION_JOB, lens_store::now_ms(), 600_000).unwrap().unwrap();
    catalog.delete_image(&plain.id).unwrap().unwrap();
    assert_eq!(catalog.job(&job.id).unwrap().unwrap().state, JobState::Cancelled);
    assert!(!catalog.complete_job(&job.id, job.attempts, JobState::Succeeded, &json!(null)).unwrap());
    assert_eq!(catalog.job(&job.id).unwrap().unwrap().state, JobState::Cancelled);
}

/// A singleton kind has one queued or running job at a time: asking again gives that job back until it
/// finishes; then a new one is made.
#[test]
fn singleton_jobs_are_not_duplicated_while_one_is_pending() {
    let catalog = Catalog::open_in_memory().unwrap();
    let (first, created) = catalog.create_singleton_job("index_rebuild", 3, &json!({})).unwrap();
    assert!(created);
    let (again, created) = catalog.create_singleton_job("index_rebuild", 3, &json!({})).unwrap();
    assert_eq!((again.id.as_str(), created), (first.id.as_str(), false));
    catalog.start_job(&first.id).unwrap();
    assert!(!catalog.create_singleton_job("index_rebuild", 3, &json!({})).unwrap().1, "running");
    assert!(catalog.create_singleton_job("other", 1, &json!({})).unwrap().1, "per kind");
    catalog.finish_job(&first.id, JobState::Succeeded, None, &json!({})).unwrap();
    let (next, created) = catalog.create_singleton_job("index_rebuild", 3, &json!({})).unwrap();
    assert!(created && next.id != first.id);
}
