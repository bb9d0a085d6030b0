//! The SQLite catalog, on real files.

use std::collections::HashSet;

use lens_store::{Catalog, JobState, NewImage, SCHEMA_VERSION, StoreError};
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
