//! Fixtures and comparison helpers shared by the integration tests.
//!
//! Fixtures are compiled in (`include_bytes!`), so the same tests run natively and on wasm32 under
//! `wasm-bindgen-test-runner` (Node, headless Chromium), where there is no filesystem.

#![allow(dead_code)] // each test binary uses a different subset

use lens_core::image::RgbImage;
use safetensors::{Dtype, SafeTensors};

/// A file under `models/fixtures/`, compiled in.
macro_rules! fixture {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/", $path)).as_slice()
    };
}
#[allow(unused_imports)] // only some test binaries name it
pub(crate) use fixture;

/// The photos of `models/fixtures/images/`, by file name (what `reference.json` names them).
pub fn fixture_image(file: &str) -> &'static [u8] {
    match file {
        "astronaut.png" => fixture!("images/astronaut.png"),
        "astronaut_lossless.webp" => fixture!("images/astronaut_lossless.webp"),
        "camera_grey.png" => fixture!("images/camera_grey.png"),
        "chelsea_palette.png" => fixture!("images/chelsea_palette.png"),
        "chelsea_rgba.png" => fixture!("images/chelsea_rgba.png"),
        "coffee.jpg" => fixture!("images/coffee.jpg"),
        "coffee_exif3.jpg" => fixture!("images/coffee_exif3.jpg"),
        "coffee_lossy.webp" => fixture!("images/coffee_lossy.webp"),
        "coffee_palette.gif" => fixture!("images/coffee_palette.gif"),
        "coins_grey.jpg" => fixture!("images/coins_grey.jpg"),
        "corrupt_truncated.jpg" => fixture!("images/corrupt_truncated.jpg"),
        "not_an_image.jpg" => fixture!("images/not_an_image.jpg"),
        "rocket.jpg" => fixture!("images/rocket.jpg"),
        "rocket_exif6.jpg" => fixture!("images/rocket_exif6.jpg"),
        other => panic!("{other} is not in the list of compiled-in fixtures (tests/common/mod.rs)"),
    }
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// `tests/data/edge/expected.safetensors`: the edge-case inputs (`<stem>.file`) and expected outputs.
pub fn edge_tensors() -> Tensors {
    Tensors(include_bytes!("../data/edge/expected.safetensors"))
}

/// `tests/data/edge/expected.json`.
pub fn edge_meta() -> serde_json::Value {
    json(include_bytes!("../data/edge/expected.json"))
}

/// A tensor from a safetensors file: shape and raw little-endian bytes.
pub struct Tensor {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub data: Vec<u8>,
}

impl Tensor {
    pub fn f32(&self) -> Vec<f32> {
        assert_eq!(self.dtype, Dtype::F32);
        self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    /// A `[H, W, 3]` u8 tensor as an image.
    pub fn rgb_image(&self) -> RgbImage {
        assert_eq!((self.dtype, self.shape.len(), self.shape[2]), (Dtype::U8, 3, 3));
        RgbImage::new(self.shape[1] as u32, self.shape[0] as u32, self.data.clone()).unwrap()
    }

    /// A `[3, H, W]` u8 tensor transposed to HWC, for comparison with [`RgbImage::data`].
    pub fn chw_to_hwc(&self) -> Vec<u8> {
        assert_eq!((self.dtype, self.shape.len(), self.shape[0]), (Dtype::U8, 3, 3));
        let plane = self.shape[1] * self.shape[2];
        (0..plane).flat_map(|i| (0..3).map(move |c| (c, i))).map(|(c, i)| self.data[c * plane + i]).collect()
    }
}

pub struct Tensors(pub &'static [u8]);

impl Tensors {
    pub fn get(&self, name: &str) -> Tensor {
        let st = SafeTensors::deserialize(self.0).expect("valid safetensors");
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        Tensor { shape: t.shape().to_vec(), dtype: t.dtype(), data: t.data().to_vec() }
    }

    pub fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(self.0).expect("valid safetensors").tensor(name).is_ok()
    }
}

/// How far two 8-bit buffers are apart.
#[derive(Clone, Copy, Debug, Default)]
pub struct Diff {
    /// Largest absolute difference, in 8-bit levels.
    pub max: u8,
    /// How many values differ at all.
    pub count: usize,
    pub total: usize,
}

impl Diff {
    pub fn of(ours: &[u8], reference: &[u8]) -> Self {
        assert_eq!(ours.len(), reference.len(), "length mismatch");
        let mut d = Diff { total: ours.len(), ..Default::default() };
        for (&a, &b) in ours.iter().zip(reference) {
            let e = a.abs_diff(b);
            if e > 0 {
                d.count += 1;
                d.max = d.max.max(e);
            }
        }
        d
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = 100.0 * self.count as f64 / self.total.max(1) as f64;
        write!(f, "max {:>3} | {:>7}/{:<7} ({pct:6.3}%)", self.max, self.count, self.total)
    }
}

#[allow(unused_imports)] // not every test binary hashes
pub use lens_core::ids::sha256_hex;
