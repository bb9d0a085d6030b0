//! The SQLite catalog, on real files.

use std::collections::HashSet;

use lens_store::{CAPTION_JOB, Catalog, JobFilter, JobState, NewImage, RetryPolicy, SCHEMA_VERSION, StoreError};
use serde_json::json;
use sha2::{Digest, Sha256};

const MODEL: &str = "clip-vit-base-patch32";

fn new_image(seed: &str, tags: &[&str]) -> NewImage {
    NewImage {
        sha256: hex::encode(Sha256::digest(seed.as_bytes())),
        mime: "image/png".into(),
        width: 640,
        height: 480,
        bytes: 1234,
        source_url: Some(format!("https://example.com/{seed}.png")),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn vector(seed: f32, dim: usize) -> Vec<f32> {
    (0..dim).map(|i| seed + i as f32 * 0.25).collect()
}

#[test]
fn fresh_file_is_migrated_in_wal_mode_and_reopens_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/catalog.sqlite");
    let catalog = Catalog::open(&path).unwrap();
    assert_eq!(catalog.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(catalog.generation().unwrap(), 0);
    let (rec, created) = catalog.insert_image(&new_image("a", &["cat"]), MODEL, &vector(1.0, 8)).unwrap();
    assert!(created);
    catalog.set_caption(&rec.id, Some("a cat")).unwrap();
    drop(catalog);

    // What another connection sees of the file: WAL, the schema, the Lens application id.
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: String = raw.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: u32 = raw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    drop(raw);

    let catalog = Catalog::open(&path).unwrap();
    let again = catalog.image(&rec.id).unwrap().unwrap();
    assert_eq!(again.caption.as_deref(), Some("a cat"));
    assert_eq!(again.tags, vec!["cat"]);
    assert_eq!(again.key, rec.key);
    assert_eq!(again.created_at, rec.created_at);
    assert_eq!(catalog.embedding(rec.key, MODEL).unwrap().unwrap(), vector(1.0, 8));
    assert_eq!(catalog.generation().unwrap(), 1);
    assert_eq!(catalog.count_images().unwrap(), 1);
}

#[test]
fn connection_pragmas_are_durable_settings() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    // synchronous / foreign_keys are per connection: check through behaviour (cascade) elsewhere,
    // and here that a second opener of the same file shares the data at once.
    let other = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    let (rec, _) = catalog.insert_image(&new_image("x", &[]), MODEL, &vector(0.0, 4)).unwrap();
    assert_eq!(other.image(&rec.id).unwrap().unwrap().sha256, rec.sha256);
}

#[test]
fn newer_schema_and_foreign_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.sqlite");
    Catalog::open(&path).unwrap();
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    let err = Catalog::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("newer than this build"), "{err}");

    let other = dir.path().join("other.sqlite");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    let err = Catalog::open(&other).unwrap_err();
    assert!(err.to_string().contains("not a Lens catalog"), "{err}");

    let garbage = dir.path().join("garbage.sqlite");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    assert!(matches!(Catalog::open(&garbage), Err(StoreError::Sqlite(_))));
}

#[test]
fn same_sha256_is_deduplicated_and_gains_other_models() {
    let catalog = Catalog::open_in_memory().unwrap();
    let img = new_image("dup", &["a"]);
    let (first, created) = catalog.insert_image(&img, MODEL, &vector(1.0, 4)).unwrap();
    assert!(created);
    assert_eq!(first.id, &img.sha256[..32]);
    assert!(first.created_at.ends_with('Z') && first.created_at.len() == 24, "{}", first.created_at);
    assert_eq!(catalog.generation().unwrap(), 1);

    // Same bytes again, same model: nothing changes, the stored embedding stays.
    let (second, created) = catalog.insert_image(&img, MODEL, &vector(9.0, 4)).unwrap();
    assert!(!created);
    assert_eq!(second, first);
    assert_eq!(catalog.embedding(first.key, MODEL).unwrap().unwrap(), vector(1.0, 4));
    assert_eq!(catalog.generation().unwrap(), 1);
    assert_eq!(catalog.count_images().unwrap(), 1);

    // Same bytes, another model: its embedding is added.
    let (third, created) = catalog.insert_image(&img, "other-model", &vector(5.0, 3)).unwrap();
    assert!(!created);
    assert_eq!(third.key, first.key);
    assert_eq!(catalog.embedding(first.key, "other-model").unwrap().unwrap(), vector(5.0, 3));
    assert_eq!(catalog.generation().unwrap(), 2);

    assert_eq!(catalog.image_by_sha256(&img.sha256).unwrap().unwrap().key, first.key);
    assert!(catalog.image("0".repeat(32).as_str()).unwrap().is_none());
}

#[test]
fn bad_input_is_rejected() {
    let catalog = Catalog::open_in_memory().unwrap();
    let mut img = new_image("bad", &[]);
    img.sha256 = "ABC".into();
    assert!(matches!(catalog.insert_image(&img, MODEL, &[1.0]), Err(StoreError::InvalidInput(_))));
    let img = new_image("bad", &[]);
    assert!(matches!(catalog.insert_image(&img, MODEL, &[]), Err(StoreError::InvalidInput(_))));
    assert!(matches!(catalog.insert_image(&img, MODEL, &[f32::NAN]), Err(StoreError::InvalidInput(_))));
    assert!(matches!(catalog.list_images(10, Some("nope"), None), Err(StoreError::InvalidInput(_))));
    assert_eq!(catalog.count_images().unwrap(), 0);
    assert_eq!(catalog.generation().unwrap(), 0);
}

#[test]
fn list_pages_newest_first_with_cursor_and_tag_filter_stable_under_inserts() {
    let catalog = Catalog::open_in_memory().unwrap();
    let mut keys = Vec::new();
    for i in 0..25 {
        let tags: &[&str] = if i % 3 == 0 { &["red", "x"] } else { &["blue"] };
        let (rec, _) = catalog.insert_image(&new_image(&format!("img{i}"), tags), MODEL, &vector(i as f32, 4)).unwrap();
        keys.push(rec.key);
    }
    // Newest first: keys descending (same-millisecond inserts are ordered by key).
    let expected: Vec<i64> = keys.iter().rev().copied().collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = catalog.list_images(10, cursor.as_deref(), None).unwrap();
        pages += 1;
        seen.extend(page.images.iter().map(|r| r.key));
        if pages == 1 {
            // Inserts between pages land before page one, never in the pages still to come.
            for i in 0..3 {
                catalog.insert_image(&new_image(&format!("late{i}"), &["red"]), MODEL, &vector(0.5, 4)).unwrap();
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);

    // Exactly a page's worth: no dangling cursor on the last page.
    let page = catalog.list_images(28, None, None).unwrap();
    assert_eq!(page.images.len(), 28);
    assert!(page.next_cursor.is_none());

    // Tag filter, paged.
    let red: Vec<i64> = catalog.list_images(100, None, Some("red")).unwrap().images.iter().map(|r| r.key).collect();
    assert_eq!(red.len(), 9 + 3);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = catalog.list_images(4, cursor.as_deref(), Some("red")).unwrap();
        assert!(page.images.iter().all(|r| r.tags.contains(&"red".to_string())));
        paged.extend(page.images.iter().map(|r| r.key));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(paged, red);
    assert!(catalog.list_images(10, None, Some("re")).unwrap().images.is_empty());

    // Tags can be replaced; the filter follows.
    let first = catalog.images_by_keys(&[keys[1]]).unwrap().remove(0);
    assert!(catalog.set_tags(&first.id, &["green".into(), "green".into(), "red".into()]).unwrap());
    assert_eq!(catalog.image(&first.id).unwrap().unwrap().tags, vec!["green", "red"]);
    let green = catalog.list_images(10, None, Some("green")).unwrap().images;
    assert_eq!(green.len(), 1);
    assert_eq!(green[0].key, keys[1]);
    assert_eq!(catalog.list_images(100, None, Some("red")).unwrap().images.len(), 13);
    assert!(!catalog.set_tags("missing", &[]).unwrap());
    assert!(!catalog.set_caption("missing", Some("x")).unwrap());
}

#[test]
fn images_by_keys_skips_missing() {
    let catalog = Catalog::open_in_memory().unwrap();
    let mut keys = Vec::new();
    for i in 0..3 {
        keys.push(catalog.insert_image(&new_image(&format!("k{i}"), &[]), MODEL, &[1.0]).unwrap().0.key);
    }
    let got: HashSet<i64> = catalog.images_by_keys(&[keys[2], 9999, keys[0]]).unwrap().iter().map(|r| r.key).collect();
    assert_eq!(got, HashSet::from([keys[0], keys[2]]));
    // More keys than one IN list holds.
    let many: Vec<i64> = (10_000..11_200).chain(keys.iter().copied()).collect();
    assert_eq!(catalog.images_by_keys(&many).unwrap().len(), 3);
    assert!(catalog.images_by_keys(&[]).unwrap().is_empty());
}

#[test]
fn delete_cascades_to_embeddings_and_tags_and_bumps_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let catalog = Catalog::open(&path).unwrap();
    let (a, _) = catalog.insert_image(&new_image("a", &["t"]), MODEL, &vector(1.0, 4)).unwrap();
    catalog.insert_image(&new_image("a", &[]), "m2", &vector(2.0, 4)).unwrap();
    let (b, _) = catalog.insert_image(&new_image("b", &["t"]), MODEL, &vector(3.0, 4)).unwrap();
    let generation = catalog.generation().unwrap();

    let deleted = catalog.delete_image(&a.id).unwrap().unwrap();
    assert_eq!(deleted.key, a.key);
    assert_eq!(catalog.generation().unwrap(), generation + 1);
    assert!(catalog.image(&a.id).unwrap().is_none());
    assert!(catalog.embedding(a.key, MODEL).unwrap().is_none());
    assert!(catalog.delete_image(&a.id).unwrap().is_none());
    assert_eq!(catalog.generation().unwrap(), generation + 1);

    let raw = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| raw.query_row(sql, [a.key], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM embeddings WHERE image_key = ?1"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM image_tags WHERE image_key = ?1"), 0);
    let tagged = catalog.list_images(10, None, Some("t")).unwrap().images;
    assert_eq!(tagged.iter().map(|r| r.key).collect::<Vec<_>>(), vec![b.key]);

    // Keys are never reused: the vector index may still hold a deleted one.
    let (c, _) = catalog.insert_image(&new_image("c", &[]), MODEL, &vector(4.0, 4)).unwrap();
    assert!(c.key > b.key);
    // Re-inserting deleted bytes gives the same public id, a new key.
    let (a2, created) = catalog.insert_image(&new_image("a", &[]), MODEL, &vector(1.0, 4)).unwrap();
    assert!(created);
    assert_eq!(a2.id, a.id);
    assert!(a2.key > c.key);
}

#[test]
fn for_each_embedding_streams_in_key_order_across_chunks() {
    let catalog = Catalog::open_in_memory().unwrap();
    let n = 2500; // more than two of its 1024-row chunks
    let mut keys = Vec::new();
    for i in 0..n {
        let (rec, _) = catalog.insert_image(&new_image(&format!("e{i}"), &[]), MODEL, &vector(i as f32, 16)).unwrap();
        keys.push(rec.key);
        if i % 2 == 0 {
            catalog.insert_image(&new_image(&format!("e{i}"), &[]), "half", &vector(-(i as f32), 2)).unwrap();
        }
    }
    let mut seen = Vec::new();
    let count = catalog
        .for_each_embedding(MODEL, &mut |key, v| {
            assert_eq!(v.len(), 16);
            seen.push((key, v[0]));
        })
        .unwrap();
    assert_eq!(count, n as u64);
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), keys);
    assert!(seen.iter().enumerate().all(|(i, s)| s.1 == i as f32));
    assert_eq!(catalog.count_embeddings(MODEL).unwrap(), n as u64);

    // The callback may use the catalog (the lock is not held while it runs).
    let mut half = 0;
    let count = catalog
        .for_each_embedding("half", &mut |key, v| {
            assert_eq!(v.len(), 2);
            assert!(catalog.embedding(key, MODEL).unwrap().is_some());
            half += 1;
        })
        .unwrap();
    assert_eq!((count, half), (1250, 1250));
    assert_eq!(catalog.for_each_embedding("none", &mut |_, _| panic!()).unwrap(), 0);
}

#[test]
fn corrupt_embedding_length_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let catalog = Catalog::open(&path).unwrap();
    let (rec, _) = catalog.insert_image(&new_image("c", &[]), MODEL, &vector(1.0, 8)).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE embeddings SET vector = zeroblob(30) WHERE image_key = ?1", [rec.key])
        .unwrap();
    let err = catalog.embedding(rec.key, MODEL).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("30 bytes, expected dim 8"), "{err}");
    let err = catalog.for_each_embedding(MODEL, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

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

#[test]
fn catalog_is_shared_across_threads() {
    let catalog = Catalog::open_in_memory().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let catalog = catalog.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    catalog.insert_image(&new_image(&format!("t{t}-{i}"), &[]), MODEL, &[1.0, 2.0]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(catalog.count_images().unwrap(), 100);
    assert_eq!(catalog.generation().unwrap(), 100);
}

/// An acknowledged insert survives the process dying at once (abort: no destructors, no WAL
/// checkpoint). The test runs itself as the child that dies.
#[test]
fn acknowledged_insert_survives_abort() {
    const CHILD: &str = "LENS_STORE_ABORT_CHILD_DB";
    if let Some(path) = std::env::var_os(CHILD) {
        let catalog = Catalog::open(std::path::Path::new(&path)).unwrap();
        catalog.insert_image(&new_image("survivor", &["kept"]), MODEL, &vector(3.0, 8)).unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    Catalog::open(&path).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "acknowledged_insert_survives_abort", "--test-threads", "1"])
        .env(CHILD, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
    assert!(dir.path().join("c.sqlite-wal").exists(), "the insert is still only in the WAL");
    let catalog = Catalog::open(&path).unwrap();
    let rec = catalog.image_by_sha256(&new_image("survivor", &[]).sha256).unwrap().unwrap();
    assert_eq!(rec.tags, vec!["kept"]);
    assert_eq!(catalog.embedding(rec.key, MODEL).unwrap().unwrap(), vector(3.0, 8));
    assert_eq!(catalog.generation().unwrap(), 1);
}

// --- captioning: jobs with retries, cache, caption search, caption embeddings --------------------

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
    let dead =
        catalog.list_jobs_where(10, &JobFilter { kind: Some(CAPTION_JOB), state: Some(JobState::Dead) }).unwrap();
    assert_eq!(dead.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec![job.id.as_str()]);
    assert!(catalog.list_jobs_where(10, &JobFilter { kind: Some("ingest"), state: None }).unwrap().is_empty());
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
    let jobs = catalog.list_jobs_where(10, &JobFilter { kind: Some(CAPTION_JOB), state: None }).unwrap();
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

#[test]
fn colors_and_metadata_round_trip() {
    let catalog = Catalog::open_in_memory().unwrap();
    let colors = json!([{"hex": "#ff0000", "share": 0.5}]);
    let metadata = json!({"format": "png", "exif": null});
    let img = NewImage { colors: Some(colors.clone()), metadata: Some(metadata.clone()), ..new_image("c", &[]) };
    let (rec, _) = catalog.insert_image(&img, MODEL, &vector(1.0, 4)).unwrap();
    assert_eq!((rec.colors.as_ref(), rec.metadata.as_ref()), (Some(&colors), Some(&metadata)));
    let again = catalog.image(&rec.id).unwrap().unwrap();
    assert_eq!(again, rec);
    let json = serde_json::to_value(&again).unwrap();
    assert_eq!(json["colors"], colors);
    assert_eq!(json["metadata"]["format"], "png");
    let (bare, _) = catalog.insert_image(&new_image("d", &[]), MODEL, &vector(1.0, 4)).unwrap();
    assert_eq!(serde_json::to_value(&bare).unwrap()["colors"], json!(null));
}

#[test]
fn caption_cache_hits_and_evicts_the_oldest() {
    let catalog = Catalog::open_in_memory().unwrap();
    let sha = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    let (a, b, c) = (sha("a"), sha("b"), sha("c"));
    assert_eq!(catalog.cached_caption(&a, "blip", "{}").unwrap(), None);
    catalog.cache_captions(&[(&a, "blip", "{}", "a cat")], 2).unwrap();
    assert_eq!(catalog.cached_caption(&a, "blip", "{}").unwrap().as_deref(), Some("a cat"));
    assert_eq!(catalog.cached_caption(&a, "blip", r#"{"num_beams":3}"#).unwrap(), None, "options are in the key");
    assert_eq!(catalog.cached_caption(&a, "blip-large", "{}").unwrap(), None, "so is the model");
    std::thread::sleep(std::time::Duration::from_millis(3));
    catalog.cache_captions(&[(&b, "blip", "{}", "a dog")], 2).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3));
    catalog.cache_captions(&[(&c, "blip", "{}", "a cow")], 2).unwrap();
    assert_eq!(catalog.count_cached_captions().unwrap(), 2);
    assert_eq!(catalog.cached_caption(&a, "blip", "{}").unwrap(), None, "the oldest went");
    assert_eq!(catalog.cached_caption(&c, "blip", "{}").unwrap().as_deref(), Some("a cow"));
    assert!(matches!(catalog.cache_captions(&[("nothex", "m", "{}", "x")], 10), Err(StoreError::InvalidInput(_))));
}

#[test]
fn captions_are_searchable_by_keyword_and_embedded_per_model() {
    let catalog = Catalog::open_in_memory().unwrap();
    let mut keys = Vec::new();
    for (i, caption) in
        ["a rocket on the launch pad", "a cup of coffee", "Un café à Paris", "rocket rocket rocket"].iter().enumerate()
    {
        let (rec, _) = catalog.insert_image(&new_image(&format!("s{i}"), &[]), MODEL, &vector(1.0, 4)).unwrap();
        let stored = catalog.store_caption(&rec.id, caption, MODEL, &vector(i as f32, 4)).unwrap().unwrap();
        assert_eq!(stored.caption.as_deref(), Some(*caption));
        keys.push(rec.key);
    }
    let found = |q: &str| catalog.search_captions(q, 10).unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(found("rocket"), vec![keys[3], keys[0]], "more occurrences rank higher");
    assert_eq!(found("ROCKETS"), vec![keys[3], keys[0]], "case and stemming");
    assert_eq!(found("cafe"), vec![keys[2]], "accents");
    assert_eq!(found("coffee launch"), found("launch coffee"));
    assert_eq!(found("coffee launch").len(), 2, "any term matches");
    let scored = catalog.search_captions("rocket", 10).unwrap();
    assert!(scored.iter().all(|(_, s)| *s > 0.0) && scored[0].1 > scored[1].1, "{scored:?}");
    assert_eq!(catalog.search_captions("rocket", 1).unwrap().len(), 1);
    let among = catalog.caption_match_scores("rocket coffee", &[keys[0], keys[2], keys[3], 999]).unwrap();
    let all: std::collections::HashMap<i64, f64> =
        catalog.search_captions("rocket coffee", 10).unwrap().into_iter().collect();
    assert_eq!(among.len(), 2, "{among:?}");
    assert_eq!((among[&keys[0]], among[&keys[3]]), (all[&keys[0]], all[&keys[3]]), "the same scores");
    assert!(catalog.caption_match_scores("***", &keys).unwrap().is_empty());
    assert!(found("zebra").is_empty());

    // Caption embeddings per model, and a new caption drops the old caption's embedding.
    let image = catalog.images_by_keys(&[keys[1]]).unwrap().remove(0);
    assert_eq!(catalog.caption_embedding(keys[1], MODEL).unwrap(), Some(vector(1.0, 4)));
    assert_eq!(catalog.caption_embeddings(&keys, MODEL).unwrap().len(), 4);
    assert!(catalog.caption_embeddings(&keys, "other").unwrap().is_empty());
    assert_eq!(catalog.embeddings(&keys[..2], MODEL).unwrap().len(), 2);
    assert!(catalog.set_caption(&image.id, Some("a zebra")).unwrap());
    assert_eq!(catalog.caption_embedding(keys[1], MODEL).unwrap(), None);
    assert_eq!(found("zebra"), vec![keys[1]]);
    assert!(found("coffee").is_empty(), "the old caption left the keyword index");
    assert!(catalog.set_caption(&image.id, None).unwrap());
    assert!(found("zebra").is_empty());
    assert!(catalog.store_caption("missing", "x", MODEL, &[1.0]).unwrap().is_none());
    assert!(matches!(catalog.store_caption(&image.id, "x", MODEL, &[f32::NAN]), Err(StoreError::InvalidInput(_))));
    // Deleting an image takes its caption out of the keyword index.
    let first = catalog.images_by_keys(&[keys[0]]).unwrap().remove(0);
    catalog.delete_image(&first.id).unwrap();
    assert_eq!(found("rocket"), vec![keys[3]]);
    assert_eq!(catalog.caption_embedding(keys[0], MODEL).unwrap(), None);
}

#[test]
fn any_user_text_is_a_safe_caption_query() {
    let catalog = Catalog::open_in_memory().unwrap();
    let (rec, _) = catalog.insert_image(&new_image("q", &[]), MODEL, &vector(1.0, 4)).unwrap();
    catalog.set_caption(&rec.id, Some("a near miss and a star or not")).unwrap();
    let nasty = [
        "\"",
        "\"\"\"",
        "a\"b",
        "AND",
        "a AND",
        "OR OR OR",
        "NOT star",
        "*",
        "star*",
        "^star",
        "NEAR(",
        "NEAR(a b, 2)",
        "near(star miss)",
        "caption: star",
        "caption:star",
        "{caption}: star",
        "-star",
        "+star",
        "(star",
        "star)",
        "'; DROP TABLE images; --",
        "\0star",
        "ｓｔａｒ",
        "星 ⭐ 🌟 étoile",
        "\u{202e}rats",
        "",
        "   ",
        "!@#$%^&*()",
    ];
    for q in nasty {
        let hits = catalog.search_captions(q, 10).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        if ["star*", "^star", "-star", "+star", "(star", "star)", "caption:star", "NOT star"].contains(&q) {
            assert_eq!(hits.len(), 1, "{q:?}: operators are plain terms");
        }
    }
    // Operator words are terms: "and", "or", "not", "near" occur in the caption.
    for q in ["AND", "OR OR OR", "NEAR(", "not"] {
        assert_eq!(catalog.search_captions(q, 10).unwrap().len(), 1, "{q:?}");
    }
    assert_eq!(lens_store::fts_query("NEAR(a b)").unwrap(), r#""near" OR "a" OR "b""#);
    assert_eq!(lens_store::fts_query("a\"b").unwrap(), r#""a" OR "b""#);
    assert_eq!(lens_store::fts_query("*^:()"), None);
    let long = (0..1000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    assert_eq!(lens_store::fts_query(&long).unwrap().matches(" OR ").count(), lens_store::MAX_QUERY_TERMS - 1);
    assert!(catalog.search_captions(&long, 10).unwrap().is_empty());
    let word = "x".repeat(10_000);
    assert!(catalog.search_captions(&word, 10).unwrap().is_empty());
}
