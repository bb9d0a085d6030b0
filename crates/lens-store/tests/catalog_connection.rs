//! The catalog connection: shared by openers and threads, durable across a crash.

use lens_store::Catalog;

use crate::common::{MODEL, new_image, vector};

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
    // The test's name in the harness: its module path without the crate's name.
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{module}::acknowledged_insert_survives_abort");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--test-threads", "1"])
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
