//! Captions: the caption cache, keyword search, caption embeddings, safe queries.

use lens_store::{Catalog, StoreError};
use sha2::{Digest, Sha256};

use crate::common::{MODEL, new_image, vector};

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
    let found = |q: &str| catalog.search_texts(q, 10).unwrap().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(found("rocket"), vec![keys[3], keys[0]], "more occurrences rank higher");
    assert_eq!(found("ROCKETS"), vec![keys[3], keys[0]], "case and stemming");
    assert_eq!(found("cafe"), vec![keys[2]], "accents");
    assert_eq!(found("coffee launch"), found("launch coffee"));
    assert_eq!(found("coffee launch").len(), 2, "any term matches");
    let scored = catalog.search_texts("rocket", 10).unwrap();
    assert!(scored.iter().all(|(_, s)| *s > 0.0) && scored[0].1 > scored[1].1, "{scored:?}");
    assert_eq!(catalog.search_texts("rocket", 1).unwrap().len(), 1);
    let among = catalog.text_match_scores("rocket coffee", &[keys[0], keys[2], keys[3], 999]).unwrap();
    let all: std::collections::HashMap<i64, f64> =
        catalog.search_texts("rocket coffee", 10).unwrap().into_iter().collect();
    assert_eq!(among.len(), 2, "{among:?}");
    assert_eq!((among[&keys[0]], among[&keys[3]]), (all[&keys[0]], all[&keys[3]]), "the same scores");
    assert!(catalog.text_match_scores("***", &keys).unwrap().is_empty());
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
        let hits = catalog.search_texts(q, 10).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        if ["star*", "^star", "-star", "+star", "(star", "star)", "caption:star", "NOT star"].contains(&q) {
            assert_eq!(hits.len(), 1, "{q:?}: operators are plain terms");
        }
    }
    // Operator words are terms: "and", "or", "not", "near" occur in the caption.
    for q in ["AND", "OR OR OR", "NEAR(", "not"] {
        assert_eq!(catalog.search_texts(q, 10).unwrap().len(), 1, "{q:?}");
    }
    assert_eq!(lens_store::fts_query("NEAR(a b)").unwrap(), r#""near" OR "a" OR "b""#);
    assert_eq!(lens_store::fts_query("a\"b").unwrap(), r#""a" OR "b""#);
    assert_eq!(lens_store::fts_query("*^:()"), None);
    let long = (0..1000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    assert_eq!(lens_store::fts_query(&long).unwrap().matches(" OR ").count(), lens_store::MAX_QUERY_TERMS - 1);
    assert!(catalog.search_texts(&long, 10).unwrap().is_empty());
    let word = "x".repeat(10_000);
    assert!(catalog.search_texts(&word, 10).unwrap().is_empty());
}
