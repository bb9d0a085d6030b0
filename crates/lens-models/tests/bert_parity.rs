//! Sentence embeddings (BERT / MiniLM) against HuggingFace `transformers`, on the tiny random checkpoint
//! `models/generate_bert_fixtures.py` writes in sentence-transformers' layout: token ids equal to the
//! reference tokenizer's (truncation at `max_seq_length`, padding to the longest); the encoder's token states
//! and the mean-pooled, normalised sentence embeddings within 1e-4 relative L2 — each embedding on its own
//! too, so one text cannot hide in the others' error. Runs natively and in wasm32 (fixtures compiled in).

use burn::backend::NdArray;
use lens_models::bert::{Pooling, SentenceEmbedder, SentenceFiles};
use lens_models::weights::Weights;
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::{assert_close, rel_l2};

type B = NdArray<f32>;

macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/minilm-tiny/", $file)).as_slice()
    };
}

fn embedder() -> SentenceEmbedder<B> {
    let files = SentenceFiles {
        config: fixture!("config.json").to_vec(),
        weights: vec![("model.safetensors".into(), fixture!("model.safetensors").to_vec())],
        tokenizer: fixture!("tokenizer.json").to_vec(),
        sentence_config: Some(fixture!("sentence_bert_config.json").to_vec()),
        modules: Some(fixture!("modules.json").to_vec()),
        pooling: Some(fixture!("1_Pooling/config.json").to_vec()),
    };
    SentenceEmbedder::load(files, &Default::default()).unwrap()
}

fn reference() -> (Value, Weights) {
    let json: Value = serde_json::from_slice(fixture!("reference.json")).unwrap();
    let weights =
        Weights::from_buffers(vec![("reference.safetensors".into(), fixture!("reference.safetensors").to_vec())])
            .unwrap();
    (json, weights)
}

fn rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

#[test]
fn sentence_embeddings_match_transformers() {
    let model = embedder();
    let (json, weights) = reference();
    let texts: Vec<&str> = json["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!((model.max_seq_length, model.pooling, model.normalize), (24, Pooling::Mean, true));

    let (ids, mask) = model.tokenize(&texts).unwrap();
    assert_eq!(ids, rows(&json["input_ids"]), "token ids");
    assert_eq!(mask, rows(&json["attention_mask"]), "attention mask");

    let seq = ids[0].len();
    let states = model.model.forward(&ids, &mask).unwrap().into_data().into_vec::<f32>().unwrap();
    let reference_states = weights.f32_values("last_hidden_state", &[texts.len(), seq, 32]).unwrap();
    assert_close("last_hidden_state", &states, &reference_states);

    let embeddings = model.embed(&texts).unwrap();
    let reference_embeddings = weights.f32_values("sentence_embedding", &[texts.len(), 32]).unwrap();
    assert_close("sentence_embedding", &embeddings.concat(), &reference_embeddings);
    for (i, (ours, theirs)) in embeddings.iter().zip(reference_embeddings.chunks(32)).enumerate() {
        let err = rel_l2(ours, theirs);
        assert!(err <= 1e-4, "text {i} ({:?}): relative L2 error {err:.3e}", texts[i]);
        let norm: f32 = ours.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised: {norm}");
    }
    // One at a time (no padding) gives the same vectors as the padded batch.
    let alone = model.embed(&[texts[1]]).unwrap();
    assert_close("one text alone", &alone[0], &reference_embeddings[32..64]);
}

#[test]
fn bad_input_is_refused() {
    let model = embedder();
    let long = "word ".repeat(5000);
    assert!(model.embed(&[long.as_str()]).is_err(), "over the tokenizer's text limit");
    assert!(model.model.forward(&[vec![101, 40000]], &[vec![1, 1]]).is_err(), "an id outside the vocabulary");
    assert!(model.model.forward(&[vec![101; 65]], &[vec![1; 65]]).is_err(), "more than 64 positions");
    assert!(model.model.forward(&[vec![101, 102]], &[vec![1]]).is_err(), "a mask of another length");
    assert!(model.embed(&[]).unwrap().is_empty());
}
