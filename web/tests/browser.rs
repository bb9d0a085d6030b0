//! The worker's browser-side pieces in headless Chromium (scripts/test.sh runs this with
//! wasm-bindgen-test-runner): IndexedDB storage across a reopen, decoding and thumbnails in wasm, and
//! the local index over stored records.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Uint8Array};
use lens_web::local::LocalIndex;
use lens_web::protocol::Item;
use lens_web::store::{Record, Store};
use lens_web::thumb;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::Blob;

wasm_bindgen_test_configure!(run_in_browser);

fn item(sha: &str, at: f64) -> Item {
    Item {
        sha256: sha.into(),
        name: format!("{sha}.jpg"),
        mime: "image/jpeg".into(),
        width: 8,
        height: 6,
        bytes: 42,
        added_at: at,
        caption: None,
        server_id: None,
    }
}

fn blob(bytes: &[u8]) -> Blob {
    Blob::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(bytes))).unwrap()
}

async fn blob_bytes(b: &Blob) -> Vec<u8> {
    let buffer = JsFuture::from(b.array_buffer()).await.unwrap();
    Uint8Array::new(&buffer).to_vec()
}

#[wasm_bindgen_test]
async fn records_survive_closing_and_reopening_the_database() {
    let name = format!("lens-test-{}", js_sys::Math::random());
    let store = Store::open(&name).await.unwrap();
    let a = Record {
        item: item("a", 1.0),
        model: "m".into(),
        embedding: vec![1.0, 0.0, 0.5],
        thumb: blob(b"thumb-a"),
        original: Some(blob(b"orig-a")),
    };
    let b = Record {
        item: item("b", 2.0),
        model: "m".into(),
        embedding: vec![0.0, 1.0, 0.0],
        thumb: blob(b"thumb-b"),
        original: None,
    };
    store.put(&a).await.unwrap();
    store.put(&b).await.unwrap();
    store.set_setting("server", Some("http://127.0.0.1:8080")).await.unwrap();
    store.close();

    // As after a reload: a new connection sees every committed write.
    let store = Store::open(&name).await.unwrap();
    let mut all = store.all().await.unwrap();
    all.sort_by(|x, y| x.item.sha256.cmp(&y.item.sha256));
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].item, a.item);
    assert_eq!(all[0].embedding, a.embedding);
    assert_eq!(blob_bytes(&all[0].thumb).await, b"thumb-a");
    assert_eq!(blob_bytes(all[0].original.as_ref().unwrap()).await, b"orig-a");
    assert!(all[1].original.is_none());
    assert_eq!(store.setting("server").await.unwrap().as_deref(), Some("http://127.0.0.1:8080"));
    assert_eq!(store.setting("cursor").await.unwrap(), None);

    // Replace (same sha256), delete, and the index rebuilt from what is stored.
    let mut a2 = a.clone();
    a2.item.caption = Some("a caption".into());
    store.put(&a2).await.unwrap();
    store.delete("b").await.unwrap();
    store.delete("nope").await.unwrap();
    let all = store.all().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].item.caption.as_deref(), Some("a caption"));
    let mut index = LocalIndex::new(3);
    for r in &all {
        index.insert(r.item.clone(), &r.embedding).unwrap();
    }
    let hits = index.search(&[1.0, 0.0, 0.5], 5).unwrap();
    assert_eq!(hits.len(), 1);
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    assert!(index.remove("a") && index.is_empty());
    store.close();
    let _ = web_sys::window().unwrap().indexed_db().unwrap().unwrap().delete_database(&name);
}

#[wasm_bindgen_test]
fn photos_decode_and_thumbnail_in_wasm() {
    let bytes = include_bytes!("../../models/fixtures/images/coffee_exif3.jpg");
    let decoded = thumb::decode(bytes).unwrap();
    assert_eq!(decoded.format.mime_type(), "image/jpeg");
    let jpeg = thumb::thumbnail_jpeg(&decoded.image, thumb::THUMB_SIDE).unwrap();
    let small = thumb::decode(&jpeg).unwrap().image;
    assert_eq!(
        (small.width, small.height),
        lens_core::thumbnail::fit(decoded.image.width, decoded.image.height, thumb::THUMB_SIDE)
    );
    assert_eq!(small.width.max(small.height), thumb::THUMB_SIDE);

    let err = thumb::decode(include_bytes!("../../models/fixtures/images/not_an_image.jpg")).unwrap_err();
    assert!(err.contains("unsupported"), "{err}");
}

#[wasm_bindgen_test]
fn the_relaxed_simd_probe_tells_engines_apart() {
    use lens_web::kernel::{RELAXED_SIMD_PROBE, relaxed_simd};
    // Chromium has relaxed SIMD (since 114), so the page starts the relaxed worker here.
    assert!(relaxed_simd(), "Chromium validates the relaxed-SIMD probe");
    // The same module with an opcode no engine defines (0xfd 0x1ff) is refused: the probe's `true`
    // comes from the instruction, not from a module that validates anyway.
    let mut unknown = RELAXED_SIMD_PROBE;
    let at = unknown.len() - 3;
    unknown[at..at + 2].copy_from_slice(&[0xff, 0x03]);
    assert!(!js_sys::WebAssembly::validate(&Uint8Array::from(&unknown[..])).unwrap());
}
