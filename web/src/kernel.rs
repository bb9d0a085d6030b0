//! Which int8 kernel this browser can run: the page starts the worker built with relaxed SIMD where
//! [`relaxed_simd`] says so (a module holding an instruction the engine lacks fails to load as a whole,
//! so the choice is made before the worker starts, not inside it).

/// A module whose one function runs `i16x8.relaxed_dot_i8x16_i7x16_s` (0xfd 0x92 0x02, the instruction
/// of the relaxed worker's int8 kernel) on two `v128.const 0`: it validates only where the engine has it.
#[rustfmt::skip]
pub const RELAXED_SIMD_PROBE: [u8; 64] = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // type section: () -> v128
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x0a, 0x2b, 0x01, 0x29, 0x00, // code section: one body of 41 bytes, no locals
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // v128.const 0
    0xfd, 0x92, 0x02, 0x0b, // i16x8.relaxed_dot_i8x16_i7x16_s, end
];

/// Whether this engine validates [`RELAXED_SIMD_PROBE`] (Chrome 114+, Firefox 120+; not Safari today).
#[cfg(target_arch = "wasm32")]
pub fn relaxed_simd() -> bool {
    js_sys::WebAssembly::validate(&js_sys::Uint8Array::from(&RELAXED_SIMD_PROBE[..])).unwrap_or(false)
}
