//! ggml blocks to f32: F32, F16, BF16, Q8_0, Q4_K, Q5_K and Q6_K.
//!
//! Block layouts are llama.cpp's (`ggml/src/ggml-common.h` `block_q8_0`, `block_q4_K`, `block_q5_K`,
//! `block_q6_K`) and the arithmetic is `ggml/src/ggml-quants.c` `dequantize_row_*`, operation for
//! operation and in the same order (`d * sc` first, then `* q - m`), without fused multiply-adds, so the
//! results are bit-identical to ggml's and to gguf-py's `gguf.quants.dequantize` (the tests check every
//! block of committed fixtures). f16 is widened by bit manipulation, keeping NaN payloads as numpy does.

use super::error::{Error, Result};
use super::ggml_type::{GgmlType, QK_K};

/// Dequantize whole blocks of `ggml_type` to f32; `what` names the data in errors (a tensor name).
pub fn dequantize(what: &str, ggml_type: GgmlType, blocks: &[u8]) -> Result<Vec<f32>> {
    let type_size = ggml_type.type_size();
    if blocks.len() % type_size != 0 {
        return Err(Error::PartialBlock { what: what.to_string(), ggml_type, len: blocks.len(), type_size });
    }
    let block: fn(&[u8], &mut [f32]) = match ggml_type {
        GgmlType::F32 => |b, out| out[0] = f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => |b, out| out[0] = f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        GgmlType::BF16 => |b, out| out[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q4_K => q4_k,
        GgmlType::Q5_K => q5_k,
        GgmlType::Q6_K => q6_k,
        _ => return Err(Error::UnsupportedType { tensor: what.to_string(), ggml_type }),
    };
    let block_size = ggml_type.block_size();
    let n = blocks.len() / type_size * block_size;
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| Error::OutOfMemory { tensor: what.to_string(), elements: n as u64 })?;
    out.resize(n, 0.0);
    for (b, o) in blocks.chunks_exact(type_size).zip(out.chunks_exact_mut(block_size)) {
        block(b, o);
    }
    Ok(out)
}

/// IEEE half to single precision, exactly; NaN keeps its sign and payload (not quieted), as numpy's
/// `astype(np.float32)` does, which is what gguf-py's F16 dequantization is.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: man * 2^-24, renormalised so that its top bit becomes the implicit one.
        (0, _) => {
            let shift = man.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | (((man << shift) & 0x3ff) << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// `block_q8_0`: f16 scale `d`, 32 × i8. y = q * d.
fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (y, &q) in out.iter_mut().zip(&b[2..34]) {
        *y = (q as i8) as f32 * d;
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of Q4_K / Q5_K
/// (`get_scale_min_k4`): sub-blocks 0–3 in the low 6 bits of bytes 0–3 (scales) and 4–7 (mins),
/// sub-blocks 4–7 in the nibbles of bytes 8–11 with their top two bits in the top bits of bytes 0–7.
fn scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `block_q4_K` (144 bytes): f16 `d`, f16 `dmin`, 12 bytes of scales/mins, 128 bytes of 4-bit quants.
/// Sub-block `j` of 32: y = (d * sc_j) * q - (dmin * m_j); quants of sub-blocks 2k and 2k+1 share bytes
/// 32k..32k+32 (low nibble, high nibble).
fn q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin, scales, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..16 + QK_K / 2]);
    for (j, sub) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min(j, scales);
        let (d1, m1) = (d * sc as f32, dmin * m as f32);
        let shift = 4 * (j % 2);
        for (y, &q) in sub.iter_mut().zip(&qs[32 * (j / 2)..32 * (j / 2) + 32]) {
            *y = d1 * ((q >> shift) & 0xf) as f32 - m1;
        }
    }
}

/// `block_q5_K` (176 bytes): as Q4_K, with 32 bytes of high bits after the scales (bit `j` of byte `l`
/// is the fifth bit of element `l` of sub-block `j`).
fn q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin, scales) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
    let (qh, qs) = (&b[16..16 + QK_K / 8], &b[16 + QK_K / 8..16 + QK_K / 8 + QK_K / 2]);
    for (j, sub) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min(j, scales);
        let (d1, m1) = (d * sc as f32, dmin * m as f32);
        let shift = 4 * (j % 2);
        let low = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for ((y, &q), &h) in sub.iter_mut().zip(low).zip(qh) {
            let q = ((q >> shift) & 0xf) | (((h >> j) & 1) << 4);
            *y = d1 * q as f32 - m1;
        }
    }
}

/// `block_q6_K` (210 bytes): 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 × i8 scales, f16 `d`.
/// Each half of 128 elements uses 64 low bytes and 32 high bytes; element `32k + l` of a half (k in 0..4)
/// takes the low (k < 2) or high nibble of low byte `32 (k % 2) + l` and bits `2k..2k+2` of high byte `l`.
/// y = (d * scale[e / 16]) * (q - 32).
fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh) = (&b[..QK_K / 2], &b[QK_K / 2..QK_K / 2 + QK_K / 4]);
    let scales = &b[QK_K / 2 + QK_K / 4..QK_K / 2 + QK_K / 4 + QK_K / 16];
    let d = f16_at(b, QK_K / 2 + QK_K / 4 + QK_K / 16);
    for (e, y) in out.iter_mut().enumerate() {
        let (half, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = (ql[64 * half + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xf;
        let high = (qh[32 * half + l] >> (2 * k)) & 3;
        let q = (low | (high << 4)) as i32 - 32;
        *y = d * (scales[e / 16] as i8) as f32 * q as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matches_half_for_every_non_nan_pattern() {
        for h in 0..=u16::MAX {
            let ours = f16_to_f32(h);
            let reference = half::f16::from_bits(h).to_f32();
            if reference.is_nan() {
                assert!(ours.is_nan(), "{h:#06x}");
                assert_eq!(ours.to_bits(), ((h as u32 & 0x8000) << 16) | 0x7f80_0000 | ((h as u32 & 0x3ff) << 13));
            } else {
                assert_eq!(ours.to_bits(), reference.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn partial_blocks_and_other_types_are_refused() {
        assert!(matches!(dequantize("t", GgmlType::Q8_0, &[0; 35]), Err(Error::PartialBlock { .. })));
        let err = dequantize("blk.0.w", GgmlType::Q4_0, &[0; 18]).unwrap_err();
        assert!(matches!(err, Error::UnsupportedType { ggml_type: GgmlType::Q4_0, .. }));
        let message = err.to_string();
        assert!(message.contains("blk.0.w") && message.contains("Q4_0"), "{message}");
    }
}
