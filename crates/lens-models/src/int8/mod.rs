//! Int8 weights: symmetric per-output-channel quantization and the W8A8 matmul kernel. Nothing here
//! knows a model: the weight loader and the shared layers use it, and each family's quantizer (CLIP's
//! `quantize_clip`) writes its matrices into a `burn-int8` [`crate::artifact`].
//!
//! Scheme. A PyTorch `Linear` weight `W` `[out, in]` is stored as `q[o, i] = round(W[o, i] / s[o])`,
//! clamped to ±127, with `s[o] = max_i |W[o, i]| / 127` (a zero row keeps `s = 0` and all-zero `q`).
//! Activations are quantized on the fly, one symmetric scale per row of `x` (`t[m] = max |x[m, :]| / 127`),
//! so `y[m, o] = t[m] · s[o] · Σ_i qx[m, i] · q[o, i] + bias[o]` with the sum exact in i32
//! (|qx · q| ≤ 127², so `in` up to 133,000 cannot overflow).
//!
//! Kernels. The sum is the only hot loop. The activations are quantized first, then each block of
//! four rows of `W` meets every row of `x`, two at a time (a 2 x 4 register block), so `W` is read
//! from memory once per product. On wasm32 built with `simd128` the block runs on
//! `i16x8.load8x8_s` + `i32x4.dot_i16x8_s`; elsewhere on a portable loop written in 16-lane chunks
//! that LLVM vectorises (i8 → i16 products summed into i32 lanes). Both compute the same integers,
//! so their results are bit-identical. Native builds split the rows of `x` over threads.
//!
//! Relaxed SIMD. With the `relaxed-simd` feature, wasm32 builds run the block on
//! `i16x8.relaxed_dot_i8x16_i7x16_s`: 16 multiply-adds per instruction instead of 8, but its second
//! operand must lie in `0..=127`. Activations are then quantized asymmetrically onto `0..=127`
//! ([`Activations::Unsigned7`]: `x ≈ t[m] · (qx - z[m])`) and each sum is corrected by `z[m] · Σ_i q[o, i]`,
//! so the weights and their artifacts are unchanged; the price is one bit of activation precision.
//!
//! - [`QuantizedMatrix`] (`matrix.rs`): the int8 matrix, its scales and its `matmul`;
//! - `kernel.rs`: the integer dot products, portable and wasm `simd128`;
//! - [`summarize`] (`summary.rs`): what an int8 artifact holds.

mod kernel;
mod matrix;
mod summary;

pub use kernel::Activations;
pub use matrix::{
    ACTIVATIONS, QuantizedMatrix, SCHEME_ACTIVATIONS, SCHEME_WEIGHTS, quantize_activations, quantize_rows, scale_name,
};
pub use summary::{ArtifactSummary, summarize};
