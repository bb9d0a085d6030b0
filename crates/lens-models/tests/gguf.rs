//! The GGUF reader against gguf-py (`models/generate_gguf_fixtures.py`, gguf 0.19.0, fixed seed):
//!
//! - dequantization of F32, F16, BF16, Q8_0, Q4_K, Q5_K and Q6_K is bit-identical to
//!   `gguf.quants.dequantize` on every committed block (special blocks first: zero, all bits set,
//!   negative, largest, subnormal, infinite and NaN scales; then random bytes). F32/F16/BF16 only move
//!   bits, so NaN payloads must match too; the quantized types compute, and IEEE 754 (like wasm) leaves an
//!   arithmetic NaN's payload open, so there a NaN must meet a NaN;
//! - a file written by `gguf.GGUFWriter` parses to exactly the metadata and tensors it was given;
//! - corrupt and hostile files (truncated, wrong magic, big-endian, huge counts and lengths, offsets past
//!   the end, misaligned or overlapping data, unknown and unsupported types) give typed errors.
//!
//! Fixtures are compiled in, so the same file runs natively and in wasm32.

use lens_models::gguf::{Array, Error, GgmlType, Gguf, Value, dequantize};
use safetensors::SafeTensors;
use serde_json::json;
use sha2::{Digest, Sha256};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/gguf/", $file)).as_slice()
    };
}

const BLOCKS: &[u8] = fixture!("blocks.safetensors");
const BLOCKS_JSON: &[u8] = fixture!("blocks.json");
const TINY: &[u8] = fixture!("tiny.gguf");
const TINY_JSON: &[u8] = fixture!("tiny.json");
const TINY_EXPECTED: &[u8] = fixture!("tiny.expected.safetensors");
const TINY_BE: &[u8] = fixture!("tiny-be.gguf");

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Bit-identical; with `nan_exact` false a NaN only has to meet a NaN.
fn assert_same_bits(what: &str, ours: &[f32], expected: &[f32], nan_exact: bool) {
    assert_eq!(ours.len(), expected.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(expected).enumerate() {
        let same = a.to_bits() == b.to_bits() || (!nan_exact && a.is_nan() && b.is_nan());
        assert!(same, "{what}[{i}]: ours {a:e} ({:#010x}), gguf {b:e} ({:#010x})", a.to_bits(), b.to_bits());
    }
}

/// SHA-256 of the values' little-endian bits, NaN written as 0x7fc00000 unless `nan_exact`.
fn digest(values: &[f32], nan_exact: bool) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for v in values {
        let bits = if v.is_nan() && !nan_exact { 0x7fc0_0000 } else { v.to_bits() };
        hasher.update(bits.to_le_bytes());
    }
    hasher.finalize().to_vec()
}

// ------------------------------------------------------------------------------------------------
// Dequantization, block by block
// ------------------------------------------------------------------------------------------------

fn check_blocks(name: &str, ggml_type: GgmlType) {
    let index: serde_json::Value = serde_json::from_slice(BLOCKS_JSON).unwrap();
    let info = &index["types"][name];
    assert_eq!(info["ggml_type"], ggml_type.name());
    assert_eq!(info["ggml_type_id"], ggml_type.id());
    assert_eq!(info["block_size"], ggml_type.block_size());
    assert_eq!(info["type_size"], ggml_type.type_size());
    let (n_blocks, n_full) = (info["n_blocks"].as_u64().unwrap() as usize, info["n_full"].as_u64().unwrap() as usize);
    let nan_exact = info["nan_bits_exact"].as_bool().unwrap();
    assert!(n_blocks >= 64, "{name}: {n_blocks} blocks");

    let st = SafeTensors::deserialize(BLOCKS).unwrap();
    let raw = st.tensor(&format!("{name}.raw")).unwrap();
    assert_eq!(raw.shape(), [n_blocks, ggml_type.type_size()]);
    let ours = dequantize(name, ggml_type, raw.data()).unwrap();
    let block = ggml_type.block_size();
    assert_eq!(ours.len(), n_blocks * block);

    let expected = f32s(st.tensor(&format!("{name}.expected")).unwrap().data());
    assert_eq!(expected.len(), n_full * block);
    assert_same_bits(name, &ours[..n_full * block], &expected, nan_exact);

    if n_full < n_blocks {
        let digests = st.tensor(&format!("{name}.sha256")).unwrap();
        assert_eq!(digests.shape(), [n_blocks, 32]);
        for (i, (values, reference)) in ours.chunks_exact(block).zip(digests.data().chunks_exact(32)).enumerate() {
            assert_eq!(digest(values, nan_exact), reference, "{name}: block {i} differs from gguf's");
        }
    }

    // The special blocks really exercised NaN, and dequantizing block by block gives the same values.
    let nan_blocks = ours.chunks_exact(block).filter(|b| b.iter().any(|v| v.is_nan())).count();
    assert_eq!(nan_blocks as u64, info["nan_blocks"].as_u64().unwrap(), "{name}: blocks with NaN");
    assert!(nan_blocks > 0, "{name}: no NaN case");
    for (i, bytes) in raw.data().chunks_exact(ggml_type.type_size()).enumerate() {
        let one = dequantize(name, ggml_type, bytes).unwrap();
        assert_same_bits(&format!("{name} block {i} alone"), &one, &ours[i * block..(i + 1) * block], true);
    }
}

#[test]
fn f32_is_bit_identical_to_gguf() {
    check_blocks("f32", GgmlType::F32);
}

#[test]
fn f16_is_bit_identical_to_gguf() {
    check_blocks("f16", GgmlType::F16);
}

#[test]
fn bf16_is_bit_identical_to_gguf() {
    check_blocks("bf16", GgmlType::BF16);
}

#[test]
fn q8_0_is_bit_identical_to_gguf() {
    check_blocks("q8_0", GgmlType::Q8_0);
}

#[test]
fn q4_k_is_bit_identical_to_gguf() {
    check_blocks("q4_k", GgmlType::Q4_K);
}

#[test]
fn q5_k_is_bit_identical_to_gguf() {
    check_blocks("q5_k", GgmlType::Q5_K);
}

#[test]
fn q6_k_is_bit_identical_to_gguf() {
    check_blocks("q6_k", GgmlType::Q6_K);
}

// ------------------------------------------------------------------------------------------------
// A file written by gguf.GGUFWriter
// ------------------------------------------------------------------------------------------------

/// A value in tiny.json's notation: integers as numbers, floats as `{"bits": ..}`, arrays as
/// `{"type": element type, "values": [..]}`.
fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json!({ "bits": x.to_bits() }),
        Value::F64(x) => json!({ "bits": x.to_bits() }),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(a) => array_json(a),
    }
}

fn array_json(a: &Array) -> serde_json::Value {
    let values: Vec<serde_json::Value> = match a {
        Array::U8(v) => v.iter().map(|x| json!(x)).collect(),
        Array::I8(v) => v.iter().map(|x| json!(x)).collect(),
        Array::U16(v) => v.iter().map(|x| json!(x)).collect(),
        Array::I16(v) => v.iter().map(|x| json!(x)).collect(),
        Array::U32(v) => v.iter().map(|x| json!(x)).collect(),
        Array::I32(v) => v.iter().map(|x| json!(x)).collect(),
        Array::U64(v) => v.iter().map(|x| json!(x)).collect(),
        Array::I64(v) => v.iter().map(|x| json!(x)).collect(),
        Array::F32(v) => v.iter().map(|x| json!({ "bits": x.to_bits() })).collect(),
        Array::F64(v) => v.iter().map(|x| json!({ "bits": x.to_bits() })).collect(),
        Array::Bool(v) => v.iter().map(|x| json!(x)).collect(),
        Array::String(v) => v.iter().map(|x| json!(x)).collect(),
        Array::Array(v) => v.iter().map(array_json).collect(),
    };
    json!({ "type": a.element_type().name(), "values": values })
}

/// Everything tiny.json says about a parse of tiny.gguf (or of a copy with another version number).
fn assert_tiny(g: &Gguf<impl AsRef<[u8]>>, version: u32) {
    let spec: serde_json::Value = serde_json::from_slice(TINY_JSON).unwrap();
    assert_eq!(g.version(), version);
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.alignment(), spec["alignment"]);
    assert_eq!(g.data_offset(), spec["data_offset"]);

    let ours: Vec<serde_json::Value> = g
        .metadata()
        .iter()
        .map(|(key, v)| json!({ "key": key, "type": v.value_type().name(), "value": value_json(v) }))
        .collect();
    let expected = spec["metadata"].as_array().unwrap();
    assert_eq!(ours.len(), expected.len());
    for (a, b) in ours.iter().zip(expected) {
        assert_eq!(a, b);
    }

    let expected_values = SafeTensors::deserialize(TINY_EXPECTED).unwrap();
    let tensors = spec["tensors"].as_array().unwrap();
    assert_eq!(g.tensors().len(), tensors.len());
    for (t, s) in g.tensors().iter().zip(tensors) {
        let name = t.name();
        assert_eq!(name, s["name"]);
        assert_eq!(t.ggml_type().name(), s["ggml_type"], "{name}");
        assert_eq!(t.ggml_type().id(), s["ggml_type_id"], "{name}");
        assert_eq!(json!(t.dims()), s["dims"], "{name}");
        assert_eq!(json!(t.shape()), s["shape"], "{name}");
        assert_eq!(t.offset(), s["offset"], "{name}");
        assert_eq!(t.n_elements(), s["n_elements"], "{name}");
        assert_eq!(t.n_bytes(), s["n_bytes"], "{name}");
        assert_eq!(g.tensor(name), Some(t));
        assert_eq!(g.tensor_data(name).unwrap().len() as u64, t.n_bytes());
        if !t.ggml_type().can_dequantize() {
            continue;
        }
        let (values, shape) = g.tensor_f32(name).unwrap();
        let reference = expected_values.tensor(name).unwrap();
        assert_eq!(shape, reference.shape(), "{name}");
        let nan_exact = matches!(t.ggml_type(), GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        assert_same_bits(name, &values, &f32s(reference.data()), nan_exact);
    }
}

#[test]
fn written_file_parses_to_what_gguf_py_wrote() {
    assert_tiny(&Gguf::parse(TINY).unwrap(), 3);
    // The written tensors hold NaN, infinities and -0 where they should.
    let (values, _) = Gguf::parse(TINY).unwrap().tensor_f32("token_embd.weight").unwrap();
    assert!(values[0].is_nan() && values[1] == f32::NEG_INFINITY && values[2].to_bits() == 0x8000_0000);
}

#[test]
fn version_2_has_the_same_layout() {
    let mut v2 = TINY.to_vec();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_tiny(&Gguf::parse(v2).unwrap(), 2);
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn open_reads_a_path() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/gguf");
    assert_tiny(&Gguf::open(format!("{dir}/tiny.gguf")).unwrap(), 3);
    assert!(matches!(Gguf::open(format!("{dir}/missing.gguf")), Err(Error::Io { .. })));
}

#[test]
fn typed_getters() {
    let g = Gguf::parse(TINY).unwrap();
    let m = g.metadata();
    assert_eq!(m.get_str("general.architecture").unwrap(), "lens-test");
    assert_eq!(m.get_u32("general.alignment").unwrap(), 64);
    assert_eq!(m.get_u8("test.u8").unwrap(), 255);
    assert_eq!(m.get_i8("test.i8").unwrap(), -128);
    assert_eq!(m.get_u16("test.u16").unwrap(), 65535);
    assert_eq!(m.get_i16("test.i16").unwrap(), -32768);
    assert_eq!(m.get_u32("test.u32").unwrap(), u32::MAX);
    assert_eq!(m.get_i32("test.i32").unwrap(), i32::MIN);
    assert_eq!(m.get_u64("test.u64").unwrap(), u64::MAX);
    assert_eq!(m.get_i64("test.i64").unwrap(), i64::MIN);
    assert_eq!(m.get_f32("test.f32").unwrap(), 0.1f32);
    assert!(m.get_f32("test.f32_nan").unwrap().is_nan());
    assert_eq!(m.get_f64("test.f64").unwrap(), 1e300);
    assert!(m.get_bool("test.bool_true").unwrap());
    assert!(!m.get_bool("test.bool_false").unwrap());
    assert_eq!(m.get_str("test.str").unwrap(), "héllo wörld ✓ 🦙");
    assert_eq!(m.get_str("test.str_empty").unwrap(), "");
    assert_eq!(m.get_str_array("tokenizer.ggml.tokens").unwrap()[5], "🦙");
    assert_eq!(m.get_i32_array("test.arr_i32").unwrap(), [i32::MIN, 0, i32::MAX]);
    assert_eq!(m.get_u32_array("test.arr_u32").unwrap(), [0, 7, u32::MAX]);
    assert_eq!(m.get_f32_array("test.arr_f32").unwrap()[..2], [0.5, -1.25]);
    assert_eq!(m.get_array("test.arr_u8").unwrap().as_u8().unwrap(), [0, 1, 254, 255]);
    let nested = m.get_array("test.arr_nested_deep").unwrap().as_arrays().unwrap();
    assert_eq!(nested[0].as_arrays().unwrap()[1].as_i32().unwrap(), [3]);
    assert_eq!(m.get_array("test.arr_nested").unwrap().describe(), "array of array of i32");

    let err = m.get_u32("test.i32").unwrap_err();
    assert!(matches!(&err, Error::WrongType { key, expected: "u32", found } if key == "test.i32" && found == "i32"));
    assert!(matches!(m.get_str_array("test.arr_i32"), Err(Error::WrongType { .. })));
    assert!(matches!(m.get_str("test.arr_u8"), Err(Error::WrongType { found, .. }) if found == "array of u8"));
    assert!(matches!(m.get_u32("llama.block_count"), Err(Error::MissingKey { .. })));
    assert!(matches!(g.tensor_f32("nope"), Err(Error::MissingTensor { .. })));
}

#[test]
fn unsupported_types_name_the_type_and_the_tensor() {
    let g = Gguf::parse(TINY).unwrap();
    assert_eq!(g.tensor_data("unsupported.q4_0").unwrap().len(), 18);
    let err = g.tensor_f32("unsupported.q4_0").unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedType { tensor, ggml_type: GgmlType::Q4_0 } if tensor == "unsupported.q4_0")
    );
    let message = err.to_string();
    assert!(message.contains("unsupported.q4_0") && message.contains("Q4_0"), "{message}");
    for ty in [GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::IQ4_XS] {
        let blocks = vec![0u8; ty.type_size()];
        assert!(
            matches!(dequantize("w", ty, &blocks), Err(Error::UnsupportedType { ggml_type, .. }) if ggml_type == ty)
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Corrupt and hostile files
// ------------------------------------------------------------------------------------------------

#[test]
fn wrong_magic_versions_and_big_endian_are_refused() {
    let mut bad = TINY.to_vec();
    bad[3] = b'E';
    assert!(matches!(Gguf::parse(&bad[..]), Err(Error::BadMagic { .. })));
    assert!(matches!(Gguf::parse(&b"PK\x03\x04 a zip file, maybe"[..]), Err(Error::BadMagic { .. })));
    assert!(matches!(Gguf::parse(&b""[..]), Err(Error::Truncated { .. })));
    for version in [0u32, 1, 4, 0xffff] {
        let mut v = TINY.to_vec();
        v[4..8].copy_from_slice(&version.to_le_bytes());
        let err = Gguf::parse(v).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { version: found } if found == version), "{err}");
    }
    let mut v1 = TINY.to_vec();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(Gguf::parse(v1).unwrap_err().to_string().contains("version 1"));

    // gguf-py's own big-endian file, and tiny.gguf with its version byte-swapped.
    assert_eq!(&TINY_BE[4..8], [0, 0, 0, 3]);
    assert!(matches!(Gguf::parse(TINY_BE), Err(Error::BigEndian { raw: 0x0300_0000 })));
    let mut be = TINY.to_vec();
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    let err = Gguf::parse(be).unwrap_err();
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn every_truncation_is_a_typed_error() {
    let full = Gguf::parse(TINY).unwrap();
    let end = full.tensors().iter().map(|t| full.data_offset() + t.offset() + t.n_bytes()).max().unwrap() as usize;
    for n in (0..TINY.len()).step_by(7) {
        match Gguf::parse(&TINY[..n]) {
            // Only the padding after the last tensor may be cut.
            Ok(g) => {
                assert!(n >= end, "truncation to {n} bytes accepted");
                assert_eq!(g.tensors().len(), full.tensors().len());
            }
            Err(Error::Truncated { .. } | Error::Limit { .. } | Error::OutOfBounds { .. }) => {
                assert!(n < end, "truncation to {n} bytes refused")
            }
            Err(other) => panic!("truncation to {n} bytes: unexpected error {other}"),
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    // Whatever a corrupted file parses to, reading all of it gives values or typed errors.
    for i in (0..TINY.len()).step_by(7) {
        let mut b = TINY.to_vec();
        b[i] ^= 0xa5;
        let Ok(g) = Gguf::parse(&b[..]) else { continue };
        for (key, _) in g.metadata().iter() {
            let _ = (g.metadata().get_u32(key), g.metadata().get_str(key), g.metadata().get_array(key));
        }
        for t in g.tensors() {
            let _ = g.tensor_f32(t.name());
        }
    }
}

/// Raw GGUF bytes, field by field, to forge what a writer never would.
struct Raw(Vec<u8>);

impl Raw {
    fn new(n_tensors: u64, n_metadata: u64) -> Self {
        Raw(b"GGUF".to_vec()).u32(3).u64(n_tensors).u64(n_metadata)
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn bytes(mut self, v: &[u8]) -> Self {
        self.0.extend(v);
        self
    }
    fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A tensor info.
    fn tensor(self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Self {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ggml_type).u64(offset)
    }
    /// Zero padding to `align`, then `n` data bytes.
    fn data(mut self, align: usize, n: usize) -> Self {
        self.0.resize(self.0.len().next_multiple_of(align), 0);
        self.0.extend((0..n).map(|i| i as u8));
        self
    }
    fn parse(&self) -> lens_models::gguf::Result<Gguf<&[u8]>> {
        Gguf::parse(&self.0[..])
    }
}

const F32: u32 = 0;
const Q4_K: u32 = 12;
const ARR: u32 = 9;

#[test]
fn forged_files_parse_when_well_formed() {
    let r = Raw::new(2, 1).str("k").u32(4).u32(7).tensor("a", &[4], F32, 0).tensor("b", &[2, 2], F32, 32).data(32, 48);
    let g = r.parse().unwrap();
    assert_eq!(g.metadata().get_u32("k").unwrap(), 7);
    assert_eq!(g.tensor_f32("b").unwrap().1, [2, 2]);
    // No tensors: no data section needed.
    assert!(Raw::new(0, 0).parse().unwrap().tensors().is_empty());
    // Empty arrays and zero-element tensors are fine.
    let r = Raw::new(1, 1).str("e").u32(ARR).u32(8).u64(0).tensor("z", &[0, 3], F32, 0).data(32, 0);
    let g = r.parse().unwrap();
    assert!(g.metadata().get_str_array("e").unwrap().is_empty());
    assert_eq!(g.tensor_f32("z").unwrap(), (vec![], vec![3, 0]));
}

#[test]
fn huge_counts_and_lengths_are_refused() {
    let limit = |r: Raw, what: &str| match r.parse() {
        Err(Error::Limit { what: w, .. }) => assert_eq!(w, what),
        other => panic!("{what}: expected a limit error, got {other:?}"),
    };
    limit(Raw::new(u64::MAX, 0), "tensor count");
    limit(Raw::new(1000, 0), "tensor count");
    limit(Raw::new(0, u64::MAX), "metadata key count");
    limit(Raw::new(0, 1).u64(u64::MAX).bytes(&[0; 8]), "metadata key");
    limit(Raw::new(0, 1).str("k").u32(8).u64(u64::MAX), "metadata string");
    limit(Raw::new(0, 1).str("k").u32(8).u64((1 << 30) + 1), "metadata string");
    limit(Raw::new(0, 1).str("k").u32(ARR).u32(0).u64(u64::MAX), "metadata array length");
    limit(Raw::new(0, 1).str("k").u32(ARR).u32(10).u64(1000).u64(0), "metadata array length");
    limit(Raw::new(0, 1).str("k").u32(ARR).u32(8).u64(1 << 29), "metadata array length");
    limit(Raw::new(0, 1).str("k").u32(ARR).u32(ARR).u64(1 << 28), "metadata array length");
    limit(Raw::new(1, 0).str(&"x".repeat(65)).u32(1).u64(1).u32(F32).u64(0), "tensor name");
    assert!(matches!(
        Raw::new(0, 1).str("k").u32(8).u64(100).bytes(b"short").parse(),
        Err(Error::Truncated { what: "metadata string", needed: 100, available: 5, .. })
    ));
}

#[test]
fn bad_metadata_is_refused() {
    let nested = |levels: usize| {
        let mut r = Raw::new(0, 1).str("deep").u32(ARR);
        for _ in 1..levels {
            r = r.u32(ARR).u64(1);
        }
        r.u32(0).u64(0)
    };
    assert!(nested(lens_models::gguf::MAX_ARRAY_DEPTH).parse().is_ok());
    assert!(matches!(nested(lens_models::gguf::MAX_ARRAY_DEPTH + 1).parse(), Err(Error::ArrayTooDeep { .. })));
    assert!(matches!(Raw::new(0, 1).str("k").u32(13).u32(0).parse(), Err(Error::UnknownValueType { id: 13, .. })));
    assert!(matches!(
        Raw::new(0, 1).str("k").u32(ARR).u32(99).u64(0).parse(),
        Err(Error::UnknownValueType { id: 99, .. })
    ));
    assert!(matches!(Raw::new(0, 1).str("k").u32(7).u8(2).parse(), Err(Error::InvalidBool { byte: 2, .. })));
    assert!(matches!(
        Raw::new(0, 1).str("k").u32(ARR).u32(7).u64(2).u8(1).u8(9).parse(),
        Err(Error::InvalidBool { byte: 9, .. })
    ));
    assert!(matches!(Raw::new(0, 1).str("").u32(0).u8(0).parse(), Err(Error::BadKey { problem: "empty", .. })));
    assert!(matches!(
        Raw::new(0, 2).str("k").u32(0).u8(0).str("k").u32(0).u8(1).parse(),
        Err(Error::BadKey { problem: "duplicated", .. })
    ));
    assert!(matches!(
        Raw::new(0, 1).str("k").u32(8).u64(2).bytes(&[0xc3, 0x28]).parse(),
        Err(Error::InvalidUtf8 { .. })
    ));
    let alignment =
        |ty: u32, v: u32| Raw::new(0, 1).str("general.alignment").u32(ty).u32(v).parse().map(|g| g.alignment());
    assert!(matches!(alignment(4, 48), Err(Error::BadAlignment { .. })));
    assert!(matches!(alignment(4, 0), Err(Error::BadAlignment { .. })));
    assert!(matches!(alignment(5, 64), Err(Error::BadAlignment { found }) if found == "a i32"));
    assert_eq!(alignment(4, 128).unwrap(), 128);
}

#[test]
fn bad_tensor_infos_are_refused() {
    let one =
        |dims: &[u64], ty: u32, offset: u64, data: usize| Raw::new(1, 0).tensor("t", dims, ty, offset).data(32, data);
    assert!(matches!(one(&[1, 1, 1, 1, 1], F32, 0, 4).parse(), Err(Error::BadDims { .. })));
    assert!(matches!(one(&[1 << 32, 1 << 32, 1 << 32], F32, 0, 4).parse(), Err(Error::BadDims { .. })));
    assert!(matches!(one(&[u64::MAX], F32, 0, 4).parse(), Err(Error::BadDims { .. })));
    assert!(matches!(one(&[1 << 62], F32, 0, 4).parse(), Err(Error::BadDims { .. })));
    let err = one(&[100], Q4_K, 0, 144).parse().unwrap_err();
    assert!(matches!(err, Error::BadDims { .. }) && err.to_string().contains("Q4_K"), "{err}");
    assert!(matches!(one(&[4], 31, 0, 16).parse(), Err(Error::UnknownGgmlType { id: 31, .. })));
    assert!(matches!(one(&[4], 1000, 0, 16).parse(), Err(Error::UnknownGgmlType { id: 1000, .. })));
    assert!(matches!(one(&[4], F32, 8, 64).parse(), Err(Error::Misaligned { offset: 8, alignment: 32, .. })));
    assert!(matches!(one(&[4], F32, 32, 40).parse(), Err(Error::OutOfBounds { .. })));
    assert!(matches!(one(&[4], F32, 0, 15).parse(), Err(Error::OutOfBounds { .. })));
    assert!(matches!(one(&[4], F32, u64::MAX - 31, 16).parse(), Err(Error::OutOfBounds { .. })));
    assert!(one(&[4], F32, 0, 16).parse().is_ok());
    // The data section itself missing.
    assert!(matches!(Raw::new(1, 0).tensor("t", &[4], F32, 0).parse(), Err(Error::Truncated { .. })));

    let two = |a: &str, a_off: u64, b: &str, b_off: u64| {
        Raw::new(2, 0).tensor(a, &[16], F32, a_off).tensor(b, &[8], F32, b_off).data(32, 128)
    };
    assert!(matches!(two("a", 0, "b", 32).parse(), Err(Error::Overlap { .. })));
    assert!(matches!(two("a", 64, "b", 96).parse(), Err(Error::Overlap { .. })));
    assert!(two("a", 0, "b", 64).parse().is_ok());
    assert!(matches!(two("a", 0, "a", 64).parse(), Err(Error::BadTensorName { .. })));
    assert!(matches!(two("", 0, "b", 64).parse(), Err(Error::BadTensorName { .. })));
}
