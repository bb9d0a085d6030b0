//! The catalog schema on real files: migration of a new file, refusal of newer and foreign ones.

use lens_store::{Catalog, SCHEMA_VERSION, StoreError};

use crate::common::{MODEL, new_image, vector};

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
