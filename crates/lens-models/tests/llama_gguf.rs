//! LLaMA from GGUF against transformers' GGUF loading (`LlamaForCausalLM.from_pretrained(dir, gguf_file=...)`,
//! `AutoTokenizer.from_pretrained(dir, gguf_file=...)`, transformers 5.23.0), on two files made by
//! `models/generate_gguf_llama_fixtures.py` (gguf-py's GGUFWriter, convert_hf_to_gguf.py's metadata and q/k
//! permutation):
//!
//! - `llama-tiny.gguf`: the llama-tiny checkpoint (SentencePiece vocabulary of 32,000, GQA, untied head) in F16,
//!   Q8_0 and F32;
//! - `llama3-q4km.gguf`: a LLaMA-3-style model with rows of 256 (byte-level BPE, `llama-bpe`, tied head,
//!   `rope_freqs.weight`) in a Q4_K_M-like mix of Q4_K, Q5_K, Q6_K and F32.
//!
//! Tolerances: logits at every position within 1e-4 relative L2 of transformers' (DESIGN.md's fp32 bar); the
//! loaded q/k weights bit-identical to transformers' (both dequantize exactly as gguf-py does); token ids
//! identical to transformers', and to llama.cpp's own test ids (`ggml-vocab-llama-spm.gguf.inp/.out`) on every
//! input where transformers agrees with llama.cpp (31 of 46: they differ on text starting with spaces, see
//! `lens_models::llama::gguf::tokenizer`).
//!
//! Fixtures are compiled in: the file runs natively and in wasm32.

use burn::backend::NdArray;
use burn::tensor::Tensor;
use lens_models::Error;
use lens_models::gguf::Gguf;
use lens_models::llama::gguf::{GgufLlamaWeights, gguf_name, permute_rows, unpermute_rows};
use lens_models::llama::{LlamaConfig, LlamaPipeline, RopeScaling};
use lens_models::tokenizer::TextTokenizer;
use lens_models::weights::Weights;
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::common::assert_close;

type B = NdArray<f32>;

macro_rules! fixture {
    ($dir:literal, $file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/", $dir, "/", $file)).as_slice()
    };
}

const LLAMA2: &[u8] = fixture!("gguf-llama", "llama-tiny.gguf");
const LLAMA3: &[u8] = fixture!("gguf-llama", "llama3-q4km.gguf");
const REFERENCE: &[u8] = fixture!("gguf-llama", "reference.safetensors");
const REFERENCE_JSON: &[u8] = fixture!("gguf-llama", "reference.json");
const LLAMA_CPP_INP: &[u8] = fixture!("gguf-llama", "ggml-vocab-llama-spm.gguf.inp");
const LLAMA_CPP_OUT: &[u8] = fixture!("gguf-llama", "ggml-vocab-llama-spm.gguf.out");
/// The HF checkpoint llama-tiny.gguf was converted from (f16).
const LLAMA2_HF: &[u8] = fixture!("llama-tiny", "model.safetensors");

fn meta() -> Value {
    serde_json::from_slice(REFERENCE_JSON).unwrap()
}

fn reference() -> Weights {
    Weights::from_buffers(vec![("reference.safetensors".into(), REFERENCE.to_vec())]).unwrap()
}

fn tensor(w: &Weights, name: &str) -> Vec<f32> {
    let shape = w.shape(name).unwrap_or_else(|| panic!("no `{name}`")).to_vec();
    w.f32_values(name, &shape).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

fn files() -> [(&'static str, &'static [u8]); 2] {
    [("llama-tiny.gguf", LLAMA2), ("llama3-q4km.gguf", LLAMA3)]
}

#[test]
fn config_is_transformers() {
    let meta = meta();
    for (name, bytes) in files() {
        let expected = &meta[name]["config"];
        let c = LlamaConfig::from_gguf(&Gguf::parse(bytes).unwrap()).unwrap();
        let num = |k: &str| expected[k].as_u64().unwrap() as usize;
        assert_eq!(c.vocab_size, num("vocab_size"), "{name}");
        assert_eq!(c.hidden_size, num("hidden_size"), "{name}");
        assert_eq!(c.intermediate_size, num("intermediate_size"), "{name}");
        assert_eq!(c.num_hidden_layers, num("num_hidden_layers"), "{name}");
        assert_eq!(c.num_attention_heads, num("num_attention_heads"), "{name}");
        assert_eq!(c.num_key_value_heads, num("num_key_value_heads"), "{name}");
        assert_eq!(c.head_dim, num("head_dim"), "{name}");
        assert_eq!(c.max_position_embeddings, num("max_position_embeddings"), "{name}");
        assert_eq!(c.rms_norm_eps, expected["rms_norm_eps"].as_f64().unwrap(), "{name}");
        assert_eq!(c.bos_token_id, Some(expected["bos_token_id"].as_u64().unwrap() as u32), "{name}");
        assert_eq!(c.eos_token_id, vec![expected["eos_token_id"].as_u64().unwrap() as u32], "{name}");
        assert_eq!(c.pad_token_id, None, "{name}");
        assert_eq!(c.tie_word_embeddings, expected["tie_word_embeddings"].as_bool().unwrap(), "{name}");
        // transformers reads no rope scaling from a LLaMA GGUF: default rope (rope_freqs.weight ignored).
        assert_eq!(expected["rope_parameters"]["rope_type"], "default", "{name}");
        assert_eq!(c.rope_parameters.rope_theta, expected["rope_parameters"]["rope_theta"].as_f64().unwrap());
        assert_eq!(c.rope_parameters.scaling, RopeScaling::Default, "{name}");
        let inv_freq: Vec<f32> = serde_json::from_value(expected["inv_freq"].clone()).unwrap();
        let ours = lens_models::llama::RotaryEmbedding::new(&c.rope_parameters, c.head_dim);
        assert_eq!(ours.inv_freq(), inv_freq.as_slice(), "{name} inv_freq");
    }
    assert!(Gguf::parse(LLAMA3).unwrap().tensor("rope_freqs.weight").is_some());
}

#[test]
fn logits_at_every_position_match_transformers() {
    let meta = meta();
    let reference = reference();
    for (file, bytes) in files() {
        let pipeline = LlamaPipeline::<B>::from_gguf(bytes, &Default::default()).unwrap();
        let vocab = pipeline.config.vocab_size;
        for case in meta[file]["logits_cases"].as_array().unwrap() {
            let (name, ids) = (case["name"].as_str().unwrap(), ids(&case["input_ids"]));
            assert_eq!(pipeline.encode(case["text"].as_str().unwrap()).unwrap(), ids, "{file} {name} prompt ids");
            let logits = pipeline.model.forward(std::slice::from_ref(&ids), None).unwrap();
            assert_eq!(logits.dims(), [1, ids.len(), vocab]);
            let ours = values(logits);
            let expected = tensor(&reference, &format!("{file}.logits.{name}"));
            assert_close(&format!("{file} logits.{name} ({} positions)", ids.len()), &ours, &expected);
            for (p, (a, b)) in ours.chunks(vocab).zip(expected.chunks(vocab)).enumerate() {
                assert_close(&format!("{file} logits.{name} position {p}"), a, b);
            }
        }
    }
}

#[test]
fn tokenizer_ids_match_transformers() {
    let meta = meta();
    for (file, bytes) in files() {
        let pipeline = LlamaPipeline::<B>::from_gguf(bytes, &Default::default()).unwrap();
        let bos = pipeline.special.bos.unwrap();
        for case in meta[file]["tokenization"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let expected = ids(&case["input_ids"]);
            let mut plain = vec![bos];
            plain.extend(ids(&case["input_ids_no_special"]));
            assert_eq!(expected, plain, "{file} {text:?}: the reference adds BOS only");
            assert_eq!(pipeline.tokenizer.encode(text).unwrap().ids, expected, "{file} {text:?}");
            let decoded = pipeline.tokenizer.decode(&expected, true).unwrap();
            assert_eq!(decoded, case["decoded"].as_str().unwrap(), "{file} {text:?} decoded");
        }
    }
}

#[test]
fn sentencepiece_ids_match_llama_cpp_where_transformers_does() {
    let meta = meta();
    let pipeline = LlamaPipeline::<B>::from_gguf(LLAMA2, &Default::default()).unwrap();
    let inp = std::str::from_utf8(LLAMA_CPP_INP).unwrap();
    let out = std::str::from_utf8(LLAMA_CPP_OUT).unwrap();
    let texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let (texts, rest) = texts.split_at(texts.len() - 1);
    assert_eq!(rest, [""]);
    let llama_cpp: Vec<Vec<u32>> =
        out.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(texts.len(), 46);
    assert_eq!(llama_cpp.len(), texts.len());
    let cases = meta["llama-tiny.gguf"]["llama_cpp_spm"].as_array().unwrap();
    assert_eq!(cases.len(), texts.len());
    let mut agree = 0;
    for ((text, theirs), case) in texts.iter().zip(&llama_cpp).zip(cases) {
        assert_eq!(case["text"].as_str().unwrap(), *text);
        assert_eq!(&ids(&case["llama_cpp_ids"]), theirs);
        let ours = pipeline.tokenizer.encode(text).unwrap().ids;
        assert_eq!(ours[0], 1, "{text:?}: BOS first");
        assert_eq!(ours[1..], ids(&case["transformers_ids"]), "{text:?}: transformers");
        if case["agree"].as_bool().unwrap() {
            assert_eq!(&ours[1..], theirs.as_slice(), "{text:?}: llama.cpp");
            agree += 1;
        } else {
            assert!(text.starts_with(' '), "{text:?}: only leading spaces are known to differ");
        }
    }
    assert_eq!(agree, 31);
}

#[test]
fn special_tokens_come_from_metadata() {
    let p2 = LlamaPipeline::<B>::from_gguf(LLAMA2, &Default::default()).unwrap();
    assert_eq!((p2.special.bos, p2.special.eos.as_slice(), p2.special.pad), (Some(1), &[2][..], None));
    let p3 = LlamaPipeline::<B>::from_gguf(LLAMA3, &Default::default()).unwrap();
    // eos_token_id, then eot_token_id (<|eot_id|>).
    assert_eq!((p3.special.bos, p3.special.eos.as_slice()), (Some(1000), &[1001, 1002][..]));
    assert!(p3.model.lm_head.is_none() && p2.model.lm_head.is_some());
}

#[test]
fn q_and_k_rows_are_unpermuted() {
    // The permutation and its inverse on a [8, 3] matrix of row numbers, 2 heads: llama.cpp interleaves the
    // halves of each head (convert_hf_to_gguf.py: reshape(n_head, 2, d/2).swapaxes(1, 2)).
    let rows: Vec<f32> = (0..8).flat_map(|r| [r as f32; 3]).collect();
    let permuted = permute_rows(&rows, 8, 3, 2);
    let order: Vec<f32> = permuted.chunks(3).map(|r| r[0]).collect();
    assert_eq!(order, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    assert_eq!(unpermute_rows(&permuted, 8, 3, 2), rows);

    // What the loader reads is what transformers loaded, bit for bit, and for the F16 layers the original
    // checkpoint's values.
    let gguf = Gguf::parse(LLAMA2).unwrap();
    let config = LlamaConfig::from_gguf(&gguf).unwrap();
    let weights = GgufLlamaWeights::new(&gguf, &config);
    let vb = weights.builder::<B>(&Default::default());
    let reference = reference();
    let hf = Weights::from_buffers(vec![("model.safetensors".into(), LLAMA2_HF.to_vec())]).unwrap();
    let (hidden, q_rows, k_rows) = (32, 32, 16);
    for layer in 0..2 {
        for (proj, rows) in [("q_proj", q_rows), ("k_proj", k_rows)] {
            let name = format!("model.layers.{layer}.self_attn.{proj}");
            let ours = values(vb.pp(&name).tensor::<2>("weight", [rows, hidden]).unwrap());
            let theirs = tensor(&reference, &format!("llama-tiny.hf.{name}.weight"));
            assert_eq!(ours, theirs, "{name}");
            let stored = gguf.tensor(&gguf_name(&format!("{name}.weight")).unwrap()).unwrap().ggml_type();
            if stored.name() == "F16" {
                assert_eq!(ours, hf.f32_values(&format!("{name}.weight"), &[rows, hidden]).unwrap(), "{name}");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------------

/// Where `needle` first occurs in `bytes`.
fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).unwrap_or_else(|| panic!("{needle:?} not found"))
}

/// The offset of a tensor info's dimension count (just after its length-prefixed name).
fn tensor_info(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    find(bytes, &needle) + needle.len()
}

fn load_err(bytes: &[u8]) -> String {
    let err: Error = LlamaPipeline::<B>::from_gguf(bytes, &Default::default()).unwrap_err();
    err.to_string()
}

#[test]
fn another_architecture_is_refused() {
    let mut bytes = LLAMA2.to_vec();
    let key = b"general.architecture";
    let at = find(&bytes, key) + key.len() + 4 + 8; // value type u32, string length u64
    bytes[at..at + 5].copy_from_slice(b"gemma");
    let err = load_err(&bytes);
    assert!(err.contains("general.architecture is `gemma`, expected `llama`"), "{err}");
}

#[test]
fn a_missing_tensor_is_named() {
    let mut bytes = LLAMA2.to_vec();
    let at = tensor_info(&bytes, "blk.1.ffn_down.weight") - "weight".len();
    bytes[at..at + 6].copy_from_slice(b"weighx");
    let err = load_err(&bytes);
    assert!(err.contains("no tensor `blk.1.ffn_down.weight`"), "{err}");
}

#[test]
fn an_unsupported_type_is_named() {
    // output.weight: Q8_0 (8) relabelled Q4_0 (2), whose blocks are smaller, so the file still parses.
    let mut bytes = LLAMA2.to_vec();
    let at = tensor_info(&bytes, "output.weight");
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let ty = at + 4 + 8 * n_dims;
    assert_eq!(u32::from_le_bytes(bytes[ty..ty + 4].try_into().unwrap()), 8);
    bytes[ty..ty + 4].copy_from_slice(&2u32.to_le_bytes());
    let err = load_err(&bytes);
    assert!(err.contains("output.weight") && err.contains("Q4_0"), "{err}");
}

#[test]
fn a_mismatched_shape_is_named() {
    // blk.0.ffn_norm.weight: [32] relabelled [16] (fewer bytes, so the file still parses).
    let mut bytes = LLAMA2.to_vec();
    let at = tensor_info(&bytes, "blk.0.ffn_norm.weight");
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 1);
    bytes[at + 4..at + 12].copy_from_slice(&16u64.to_le_bytes());
    let err = load_err(&bytes);
    assert!(err.contains("`blk.0.ffn_norm.weight` has shape [16], expected [32]"), "{err}");
}

#[test]
fn another_tokenizer_model_is_refused() {
    let mut bytes = LLAMA2.to_vec();
    let key = b"tokenizer.ggml.model";
    let at = find(&bytes, key) + key.len() + 4 + 8;
    bytes[at..at + 5].copy_from_slice(b"bert_");
    let err = load_err(&bytes);
    assert!(err.contains("tokenizer.ggml.model `bert_` is not supported"), "{err}");
}
