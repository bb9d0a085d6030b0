//! The CLIP tokenizer on the real OpenAI BPE vocabulary (`tokenizer.json` as `transformers` saves it,
//! from ../shared/reference/tokenizers/clip-hf), against ids the reference tokenizer produced for
//! varied strings (`models/fixtures/tokenizer/clip_ids.json`). Ids must be identical.

use lens_models::tokenizer::{HfTokenizer, TextTokenizer};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/", $path)).as_slice()
    };
}

fn clip_tokenizer() -> HfTokenizer {
    HfTokenizer::from_bytes(
        fixture!("clip-tiny-gelu/tokenizer.json"),
        Some(fixture!("clip-tiny-gelu/tokenizer_config.json")),
        77,
        "<|endoftext|>",
    )
    .unwrap()
}

#[test]
fn known_ids_of_the_real_vocabulary() {
    let t = clip_tokenizer();
    let encoded = t.encode("a photo of a cat").unwrap();
    let real: Vec<u32> =
        encoded.ids.iter().zip(&encoded.attention_mask).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect();
    assert_eq!(real, [49406, 320, 1125, 539, 320, 2368, 49407]);
    assert_eq!(encoded.ids.len(), 77);
    // Padding is the tokenizer_config's pad token, <|endoftext|>.
    assert_eq!(encoded.ids[76], 49407);
    assert_eq!(t.context_length(), 77);
}

#[test]
fn ids_match_reference_tokenizer() {
    let t = clip_tokenizer();
    let cases: serde_json::Value = serde_json::from_slice(fixture!("tokenizer/clip_ids.json")).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> =
            case["ids_77"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(t.encode(text).unwrap().ids, expected, "ids of {text:?}");
    }
}

#[test]
fn long_texts_are_truncated_keeping_the_end_token() {
    let t = clip_tokenizer();
    let long = "photo ".repeat(200);
    let e = t.encode(&long).unwrap();
    assert_eq!(e.ids.len(), 77);
    assert_eq!(e.ids[0], 49406);
    assert_eq!(e.ids[76], 49407);
    assert!(e.attention_mask.iter().all(|&m| m == 1));
}

#[test]
fn bad_tokenizer_files_are_errors() {
    assert!(HfTokenizer::from_bytes(b"{not json", None, 77, "<|endoftext|>").is_err());
    let err =
        HfTokenizer::from_bytes(fixture!("clip-tiny-gelu/tokenizer.json"), None, 77, "<no-such-token>").unwrap_err();
    assert!(err.to_string().contains("<no-such-token>"), "{err}");
}
