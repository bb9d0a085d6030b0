//! Images in the catalog: deduplication, validation, listing with cursors and tags, deletes.

use std::collections::HashSet;

use lens_store::{Catalog, NewImage, StoreError, Visible};
use serde_json::json;

use crate::common::{MODEL, new_image, vector};

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
    assert!(matches!(catalog.list_images(10, Some("nope"), None, Visible::All), Err(StoreError::InvalidInput(_))));
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
        let page = catalog.list_images(10, cursor.as_deref(), None, Visible::All).unwrap();
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
    let page = catalog.list_images(28, None, None, Visible::All).unwrap();
    assert_eq!(page.images.len(), 28);
    assert!(page.next_cursor.is_none());

    // Tag filter, paged.
    let red: Vec<i64> =
        catalog.list_images(100, None, Some("red"), Visible::All).unwrap().images.iter().map(|r| r.key).collect();
    assert_eq!(red.len(), 9 + 3);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = catalog.list_images(4, cursor.as_deref(), Some("red"), Visible::All).unwrap();
        assert!(page.images.iter().all(|r| r.tags.contains(&"red".to_string())));
        paged.extend(page.images.iter().map(|r| r.key));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(paged, red);
    assert!(catalog.list_images(10, None, Some("re"), Visible::All).unwrap().images.is_empty());

    // Tags can be replaced; the filter follows.
    let first = catalog.images_by_keys(&[keys[1]]).unwrap().remove(0);
    assert!(catalog.set_tags(&first.id, &["green".into(), "green".into(), "red".into()]).unwrap());
    assert_eq!(catalog.image(&first.id).unwrap().unwrap().tags, vec!["green", "red"]);
    let green = catalog.list_images(10, None, Some("green"), Visible::All).unwrap().images;
    assert_eq!(green.len(), 1);
    assert_eq!(green[0].key, keys[1]);
    assert_eq!(catalog.list_images(100, None, Some("red"), Visible::All).unwrap().images.len(), 13);
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
    let tagged = catalog.list_images(10, None, Some("t"), Visible::All).unwrap().images;
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

/// Identical bytes stored by two tenants are one image held by both: each sees it (`created` for each the
/// first time), lists and counts only its own, and a delete by one lets go of it until the last holder's
/// delete removes it. An image stored without an owner is seen by neither.
#[test]
fn tenants_hold_images_and_see_only_their_own() {
    let catalog = Catalog::open_in_memory().unwrap();
    let held = |seed: &str, owner: Option<&str>| NewImage { owner: owner.map(str::to_string), ..new_image(seed, &[]) };
    let (shared, created) = catalog.insert_image(&held("shared", Some("ann")), MODEL, &vector(1.0, 4)).unwrap();
    assert!(created);
    let (again, created) = catalog.insert_image(&held("shared", Some("bob")), MODEL, &vector(1.0, 4)).unwrap();
    assert!(created, "new to bob");
    assert_eq!(again.key, shared.key);
    assert!(!catalog.insert_image(&held("shared", Some("bob")), MODEL, &vector(1.0, 4)).unwrap().1);
    let (anns, _) = catalog.insert_image(&held("ann only", Some("ann")), MODEL, &vector(2.0, 4)).unwrap();
    let (nobodys, _) = catalog.insert_image(&held("no owner", None), MODEL, &vector(3.0, 4)).unwrap();
    let (ann, bob) = (Visible::To("ann"), Visible::To("bob"));

    assert!(catalog.visible_image(&anns.id, ann).unwrap().is_some());
    assert!(catalog.visible_image(&anns.id, bob).unwrap().is_none());
    assert!(catalog.visible_image(&nobodys.id, ann).unwrap().is_none());
    assert!(catalog.visible_image(&nobodys.id, Visible::All).unwrap().is_some());
    let listed =
        |v| catalog.list_images(10, None, None, v).unwrap().images.iter().map(|r| r.key).collect::<HashSet<_>>();
    assert_eq!(listed(ann), HashSet::from([shared.key, anns.key]));
    assert_eq!(listed(bob), HashSet::from([shared.key]));
    assert_eq!(listed(Visible::All).len(), 3);
    assert_eq!((catalog.count_visible_images(ann).unwrap(), catalog.count_visible_images(bob).unwrap()), (2, 1));
    let keys = [shared.key, anns.key, nobodys.key];
    assert_eq!(catalog.visible_images_by_keys(&keys, bob).unwrap().len(), 1);

    assert_eq!(catalog.release_image(&anns.id, bob).unwrap(), lens_store::Deleted::NotFound);
    assert_eq!(catalog.release_image(&shared.id, ann).unwrap(), lens_store::Deleted::Released);
    assert!(catalog.visible_image(&shared.id, ann).unwrap().is_none());
    assert!(catalog.visible_image(&shared.id, bob).unwrap().is_some(), "bob still holds it");
    let generation = catalog.generation().unwrap();
    assert!(
        matches!(catalog.release_image(&shared.id, bob).unwrap(), lens_store::Deleted::Removed(r) if r.key == shared.key)
    );
    assert!(catalog.image(&shared.id).unwrap().is_none());
    assert_eq!(catalog.generation().unwrap(), generation + 1);
    assert!(matches!(catalog.release_image(&nobodys.id, Visible::All).unwrap(), lens_store::Deleted::Removed(_)));
}

/// One upload request is one transaction: new images with their embeddings and images already stored
/// (no embedding: the tenant now holds them, their jobs are queued) commit together, or nothing does.
#[test]
fn an_upload_commits_all_its_images_or_none() {
    let catalog = Catalog::open_in_memory().unwrap();
    let (stored, _) = catalog.insert_image(&new_image("stored", &[]), MODEL, &vector(1.0, 4)).unwrap();
    let generation = catalog.generation().unwrap();
    let tenant = |image: NewImage| NewImage { owner: Some("t1".into()), ..image };
    let again = tenant(NewImage {
        sha256: stored.sha256.clone(),
        caption_options: Some(json!({"beams": 1})),
        ..Default::default()
    });
    let fresh = tenant(new_image("fresh", &["x"]));
    let mut broken = tenant(new_image("broken", &[]));
    broken.sha256 = "not a sha256".into();
    let e = vector(2.0, 4);

    // A bad entry fails the whole request: the new image is not stored, the old one not held.
    let err = catalog.insert_upload(&[(&fresh, Some(&e)), (&again, None), (&broken, Some(&e))], MODEL).unwrap_err();
    assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    // So does a new image without an embedding (checked inside the transaction, after the others).
    let unknown = tenant(new_image("never stored", &[]));
    let err = catalog.insert_upload(&[(&fresh, Some(&e)), (&again, None), (&unknown, None)], MODEL).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(catalog.count_images().unwrap(), 1);
    assert_eq!(catalog.count_visible_images(Visible::To("t1")).unwrap(), 0);
    assert_eq!(catalog.generation().unwrap(), generation);
    assert!(catalog.list_jobs(10).unwrap().is_empty());

    let done = catalog.insert_upload(&[(&fresh, Some(&e)), (&again, None)], MODEL).unwrap();
    assert_eq!(done.len(), 2);
    assert!(done[0].1 && done[0].0.tags == ["x"]);
    assert_eq!((done[1].0.key, done[1].1), (stored.key, true), "held by t1 from now on");
    assert_eq!(catalog.count_visible_images(Visible::To("t1")).unwrap(), 2);
    assert_eq!(catalog.embedding(done[0].0.key, MODEL).unwrap().unwrap(), e);
    assert_eq!(catalog.embedding(stored.key, MODEL).unwrap().unwrap(), vector(1.0, 4), "kept");
    let jobs = catalog.list_jobs(10).unwrap();
    assert_eq!(jobs.len(), 1, "a caption job for the stored image, none asked for the fresh one: {jobs:?}");
    assert_eq!((jobs[0].kind.as_str(), &jobs[0].params["image"]), ("caption", &json!(stored.id)));
    let stored_sha = [stored.sha256.clone(), fresh.sha256.clone(), "0".repeat(64)];
    assert_eq!(catalog.stored_sha256s(&stored_sha).unwrap(), stored_sha[..2].iter().cloned().collect());
}
