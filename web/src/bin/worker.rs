//! The Web Worker: model, decoding, thumbnails, local index and storage.
#[cfg(not(target_arch = "wasm32"))]
fn main() {}
#[cfg(target_arch = "wasm32")]
fn main() {}
