//! CLIP image pre-processing, exactly as `transformers`' `CLIPImageProcessor` (PIL backend) does it.
//!
//! Reference: transformers 5.23.0, `CLIPImageProcessorPil` (`models/clip/image_processing_pil_clip.py`)
//! over `PilBackend._preprocess` (`image_processing_backends.py`) and `image_transforms.py`:
//!
//! 1. resize: `get_resize_output_image_size(size["shortest_edge"], default_to_square=False)` — the short
//!    side becomes `shortest_edge`, the long side `int(shortest_edge * long / short)` (truncated) — then
//!    PIL `Image.resize(..., resample)` on the 8-bit image ([`crate::resample`] ports it exactly);
//! 2. centre crop: `top = (h - crop_h) // 2`, `left = (w - crop_w) // 2` (floor division), zero padding
//!    where the crop reaches past the image;
//! 3. rescale: `image.astype(float64) * rescale_factor`, then cast to `float32`;
//! 4. normalise: `(x - mean) / std` in `float32`, per channel.
//!
//! Steps 1-2 stay in `u8` ([`ClipImageProcessor::resize_and_crop`]); 3-4 are a per-channel lookup table
//! holding the very `f32` values numpy computes, so the output matches the reference bit for bit when
//! the 8-bit stage does.
//!
//! BLIP's `BlipImageProcessor` is the same pipeline with other defaults (an exact 384x384 resize, no
//! centre crop): [`ClipImageProcessorConfig::blip_defaults`], [`ClipImageProcessor::from_json_blip`].

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::image::RgbImage;
use crate::resample::{self, Filter};
use crate::{Error, Result};

/// `OPENAI_CLIP_MEAN` in transformers.
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// `OPENAI_CLIP_STD` in transformers.
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// How `resize` picks the output size: the `size` entry of `preprocessor_config.json`.
///
/// Deserialises from a dict with exactly one of transformers' accepted key sets, or from a bare integer,
/// which CLIP reads as `{"shortest_edge": n}` (its `default_to_square` is false).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub enum Size {
    /// `{"shortest_edge": n}`: the short side becomes `n`, the aspect ratio is kept.
    ShortestEdge(u32),
    /// `{"shortest_edge": s, "longest_edge": l}`: as `ShortestEdge(s)`, shrunk so the long side fits `l`.
    ShortestLongest { shortest_edge: u32, longest_edge: u32 },
    /// `{"height": h, "width": w}`: exactly this size.
    Exact { height: u32, width: u32 },
    /// `{"max_height": h, "max_width": w}`: the largest size that fits, aspect ratio kept.
    MaxHeightWidth { max_height: u32, max_width: u32 },
}

impl Size {
    /// The `(height, width)` an image of `width` x `height` is resized to, computed as transformers does
    /// (same float operations, same truncations). Images with a zero side give `(0, 0)`.
    pub fn output_size(self, width: u32, height: u32) -> (u32, u32) {
        if width == 0 || height == 0 {
            return (0, 0);
        }
        let (h, w) = (f64::from(height), f64::from(width));
        match self {
            // get_resize_output_image_size(size, default_to_square=False)
            Self::ShortestEdge(size) => {
                let (short, long) = if width <= height { (width, height) } else { (height, width) };
                // `int(requested_new_short * long / short)`: exact integer product, one float division.
                let new_long = ((u64::from(size) * u64::from(long)) as f64 / f64::from(short)) as u32;
                if width <= height { (new_long, size) } else { (size, new_long) }
            }
            // get_size_with_aspect_ratio((height, width), shortest_edge, longest_edge)
            Self::ShortestLongest { shortest_edge, longest_edge } => {
                let (min_side, max_side) = (h.min(w), h.max(w));
                let mut size = u64::from(shortest_edge);
                let mut raw_size = None;
                if max_side / min_side * size as f64 > f64::from(longest_edge) {
                    let raw = f64::from(longest_edge) * min_side / max_side;
                    raw_size = Some(raw);
                    size = raw.round_ties_even() as u64; // Python's round()
                }
                let (height, width) = (u64::from(height), u64::from(width));
                let scaled = |num: u64, den: u64| match raw_size {
                    Some(raw) => (raw * num as f64 / den as f64) as u32,
                    None => ((size * num) as f64 / den as f64) as u32,
                };
                if (height <= width && height == size) || (width <= height && width == size) {
                    (height as u32, width as u32)
                } else if width < height {
                    (scaled(height, width), size as u32)
                } else {
                    (size as u32, scaled(width, height))
                }
            }
            Self::Exact { height, width } => (height, width),
            // get_image_size_for_max_height_width
            Self::MaxHeightWidth { max_height, max_width } => {
                let scale = (f64::from(max_height) / h).min(f64::from(max_width) / w);
                ((h * scale) as u32, (w * scale) as u32)
            }
        }
    }
}

impl TryFrom<Value> for Size {
    type Error = String;

    fn try_from(value: Value) -> std::result::Result<Self, String> {
        if let Some(n) = value.as_u64() {
            return Ok(Self::ShortestEdge(to_u32(n)?));
        }
        let Value::Object(map) = &value else {
            return Err(format!("size must be an integer or a dict, got {value}"));
        };
        let get = |key: &str| map.get(key).filter(|v| !v.is_null());
        let mut keys: Vec<&str> = map.iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let int = |key: &str| -> std::result::Result<u32, String> {
            let v = get(key).ok_or_else(|| format!("size.{key} is missing"))?;
            to_u32(v.as_u64().ok_or_else(|| format!("size.{key} must be a non-negative integer, got {v}"))?)
        };
        match keys.as_slice() {
            ["shortest_edge"] => Ok(Self::ShortestEdge(int("shortest_edge")?)),
            ["longest_edge", "shortest_edge"] => {
                Ok(Self::ShortestLongest { shortest_edge: int("shortest_edge")?, longest_edge: int("longest_edge")? })
            }
            ["height", "width"] => Ok(Self::Exact { height: int("height")?, width: int("width")? }),
            ["max_height", "max_width"] => {
                Ok(Self::MaxHeightWidth { max_height: int("max_height")?, max_width: int("max_width")? })
            }
            _ => Err(format!(
                "size must have the keys {{shortest_edge}}, {{shortest_edge, longest_edge}}, {{height, width}} \
                 or {{max_height, max_width}}, got {keys:?}"
            )),
        }
    }
}

/// The `crop_size` entry: `{"height": h, "width": w}`, or a bare integer for a square.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct CropSize {
    pub height: u32,
    pub width: u32,
}

impl TryFrom<Value> for CropSize {
    type Error = String;

    fn try_from(value: Value) -> std::result::Result<Self, String> {
        if let Some(n) = value.as_u64() {
            let n = to_u32(n)?;
            return Ok(Self { height: n, width: n });
        }
        let field = |key: &str| -> std::result::Result<u32, String> {
            let v = value
                .get(key)
                .ok_or_else(|| format!("crop_size must be an integer or have height and width, got {value}"))?;
            to_u32(v.as_u64().ok_or_else(|| format!("crop_size.{key} must be a non-negative integer, got {v}"))?)
        };
        Ok(Self { height: field("height")?, width: field("width")? })
    }
}

/// A per-channel value (`image_mean`, `image_std`): a list of three numbers, or one for all channels.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct PerChannel(pub [f64; 3]);

impl TryFrom<Value> for PerChannel {
    type Error = String;

    fn try_from(value: Value) -> std::result::Result<Self, String> {
        if let Some(x) = value.as_f64() {
            return Ok(Self([x; 3]));
        }
        match value.as_array().map(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>()) {
            Some(Some(v)) if v.len() == 3 => Ok(Self([v[0], v[1], v[2]])),
            _ => Err(format!("expected a number or a list of 3 numbers, got {value}")),
        }
    }
}

/// The `resample` entry: one of Pillow's filter codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u8")]
pub struct Resample(pub Filter);

impl TryFrom<u8> for Resample {
    type Error = String;

    fn try_from(code: u8) -> std::result::Result<Self, String> {
        Filter::from_pil_code(code).map(Self).ok_or_else(|| format!("unknown PIL resampling filter {code}"))
    }
}

fn to_u32(n: u64) -> std::result::Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("{n} is too large"))
}

/// `preprocessor_config.json` of a CLIP checkpoint, with transformers' key names and its
/// `CLIPImageProcessor` defaults for missing keys. Unknown keys (`image_processor_type`, ...) are ignored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClipImageProcessorConfig {
    pub do_resize: bool,
    pub size: Size,
    pub resample: Resample,
    pub do_center_crop: bool,
    pub crop_size: CropSize,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: PerChannel,
    pub image_std: PerChannel,
    /// Images reach the processor as RGB already ([`RgbImage`]), so this changes nothing; kept for fidelity.
    pub do_convert_rgb: bool,
}

impl Default for ClipImageProcessorConfig {
    /// `CLIPImageProcessor()`'s defaults, which are openai/clip-vit-base-patch32's settings.
    fn default() -> Self {
        Self {
            do_resize: true,
            size: Size::ShortestEdge(224),
            resample: Resample(Filter::Bicubic),
            do_center_crop: true,
            crop_size: CropSize { height: 224, width: 224 },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: PerChannel(OPENAI_CLIP_MEAN),
            image_std: PerChannel(OPENAI_CLIP_STD),
            do_convert_rgb: true,
        }
    }
}

impl ClipImageProcessorConfig {
    /// `BlipImageProcessor()`'s defaults, which are Salesforce/blip-image-captioning-base's settings.
    ///
    /// Reference: transformers 5.23.0, `BlipImageProcessorPil` (`models/blip/image_processing_pil_blip.py`),
    /// a `PilBackend` with `size = {"height": 384, "width": 384}`, `resample = BICUBIC`, `do_resize`,
    /// `do_rescale` (1/255, the base default), `do_normalize` with `OPENAI_CLIP_MEAN`/`OPENAI_CLIP_STD`,
    /// `do_convert_rgb`, `default_to_square = True`, and no `do_center_crop` / `crop_size` at all: the
    /// image is resized straight to 384x384 (aspect ratio not kept) and never cropped. `crop_size` is set
    /// to the resize size here only so that a config turning `do_center_crop` on without a `crop_size`
    /// stays well-defined (a no-op crop).
    pub fn blip_defaults() -> Self {
        Self {
            size: Size::Exact { height: 384, width: 384 },
            do_center_crop: false,
            crop_size: CropSize { height: 384, width: 384 },
            ..Self::default()
        }
    }

    /// `defaults` overridden by the keys a `preprocessor_config.json` sets, as transformers 5's
    /// `_set_attributes` does: a missing key or a `null` value keeps the default; unknown keys are
    /// ignored. `square_int_size` is the processor's `default_to_square`: whether a bare integer `size`
    /// means `{"height": n, "width": n}` (BLIP) rather than `{"shortest_edge": n}` (CLIP).
    fn from_json_over(bytes: &[u8], defaults: Self, square_int_size: bool) -> Result<Self> {
        fn set<T: DeserializeOwned>(map: &Map<String, Value>, key: &str, slot: &mut T) -> Result<()> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(()),
                Some(v) => {
                    *slot = T::deserialize(v).map_err(|e| Error::InvalidConfig { detail: format!("{key}: {e}") })?;
                    Ok(())
                }
            }
        }
        let map: Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| Error::InvalidConfig { detail: e.to_string() })?;
        let mut config = defaults;
        // Every field, by name: a field added to the struct without a line here does not compile.
        let Self {
            do_resize,
            size,
            resample,
            do_center_crop,
            crop_size,
            do_rescale,
            rescale_factor,
            do_normalize,
            image_mean,
            image_std,
            do_convert_rgb,
        } = &mut config;
        set(&map, "do_resize", do_resize)?;
        match map.get("size").and_then(Value::as_u64) {
            Some(n) if square_int_size => {
                let n = to_u32(n).map_err(|detail| Error::InvalidConfig { detail: format!("size: {detail}") })?;
                *size = Size::Exact { height: n, width: n };
            }
            _ => set(&map, "size", size)?,
        }
        set(&map, "resample", resample)?;
        set(&map, "do_center_crop", do_center_crop)?;
        set(&map, "crop_size", crop_size)?;
        set(&map, "do_rescale", do_rescale)?;
        set(&map, "rescale_factor", rescale_factor)?;
        set(&map, "do_normalize", do_normalize)?;
        set(&map, "image_mean", image_mean)?;
        set(&map, "image_std", image_std)?;
        set(&map, "do_convert_rgb", do_convert_rgb)?;
        Ok(config)
    }

    /// The `(height, width)` the resize step produces for an input of `width` x `height`
    /// (the input size when `do_resize` is false).
    pub fn resize_output_size(&self, width: u32, height: u32) -> (u32, u32) {
        if self.do_resize { self.size.output_size(width, height) } else { (height, width) }
    }

    /// The `(height, width)` every output has, if the config fixes it: the crop size when cropping,
    /// else a `{"height", "width"}` resize. `None` when the output follows the input's shape.
    pub fn fixed_output_size(&self) -> Option<(u32, u32)> {
        match (self.do_center_crop, self.do_resize, self.size) {
            (true, _, _) => Some((self.crop_size.height, self.crop_size.width)),
            (false, true, Size::Exact { height, width }) => Some((height, width)),
            _ => None,
        }
    }

    /// Checks what [`ClipImageProcessor`] relies on: a fixed, non-empty output size (every batch is one
    /// `[N, 3, H, W]` tensor), non-zero resize targets and non-zero standard deviations.
    pub fn validate(&self) -> Result<()> {
        let invalid = |detail: String| Err(Error::InvalidConfig { detail });
        let Some((h, w)) = self.fixed_output_size() else {
            return invalid(format!(
                "the output size depends on the input (do_center_crop is false and size is {:?}); \
                 a fixed size is needed to batch images",
                self.size
            ));
        };
        if h == 0 || w == 0 {
            return invalid(format!("output size {h}x{w} is empty"));
        }
        let zero_size = match self.size {
            Size::ShortestEdge(s) => s == 0,
            Size::ShortestLongest { shortest_edge, longest_edge } => shortest_edge == 0 || longest_edge == 0,
            Size::Exact { height, width } => height == 0 || width == 0,
            Size::MaxHeightWidth { max_height, max_width } => max_height == 0 || max_width == 0,
        };
        if self.do_resize && zero_size {
            return invalid(format!("size {:?} has a zero side", self.size));
        }
        if self.do_normalize && self.image_std.0.contains(&0.0) {
            return invalid(format!("image_std {:?} has a zero", self.image_std.0));
        }
        if self.do_rescale && !self.rescale_factor.is_finite() {
            return invalid(format!("rescale_factor {} is not finite", self.rescale_factor));
        }
        Ok(())
    }
}

/// CLIP's image processor: RGB8 images in, normalised `f32` pixel values out.
#[derive(Clone, Debug)]
pub struct ClipImageProcessor {
    config: ClipImageProcessorConfig,
    output_size: (usize, usize),
    /// `lut[c][v]`: the final value of channel `c` for the 8-bit level `v`.
    lut: Box<[[f32; 256]; 3]>,
}

impl ClipImageProcessor {
    /// Reads a `preprocessor_config.json`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for malformed JSON, bad values, or a config without a fixed output size
    /// (see [`ClipImageProcessorConfig::validate`]).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        Self::from_json_with_defaults(bytes, ClipImageProcessorConfig::default())
    }

    /// Reads a BLIP `preprocessor_config.json` (`BlipImageProcessor`): missing keys take
    /// [`ClipImageProcessorConfig::blip_defaults`] — so no centre crop, since published BLIP configs carry
    /// no `do_center_crop` / `crop_size` — and a bare integer `size` is a square (`default_to_square`).
    ///
    /// # Errors
    /// As [`ClipImageProcessor::from_json`].
    pub fn from_json_blip(bytes: &[u8]) -> Result<Self> {
        let config = ClipImageProcessorConfig::from_json_over(bytes, ClipImageProcessorConfig::blip_defaults(), true)?;
        config.validate()?;
        Ok(Self::new(config))
    }

    /// Reads a `preprocessor_config.json` whose missing (or `null`) keys take `defaults`; a bare integer
    /// `size` is `{"shortest_edge": n}`, as for CLIP. [`ClipImageProcessor::from_json`] is this with
    /// [`ClipImageProcessorConfig::default`].
    ///
    /// # Errors
    /// As [`ClipImageProcessor::from_json`].
    pub fn from_json_with_defaults(bytes: &[u8], defaults: ClipImageProcessorConfig) -> Result<Self> {
        let config = ClipImageProcessorConfig::from_json_over(bytes, defaults, false)?;
        config.validate()?;
        Ok(Self::new(config))
    }

    /// A processor for a config built in code.
    ///
    /// # Panics
    /// If [`ClipImageProcessorConfig::validate`] fails (configs from files go through
    /// [`ClipImageProcessor::from_json`], which returns the error instead).
    pub fn new(config: ClipImageProcessorConfig) -> Self {
        if let Err(e) = config.validate() {
            panic!("{e}");
        }
        let (h, w) = config.fixed_output_size().expect("validated");
        let mut lut = Box::new([[0.0_f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            // numpy: `mean`/`std` become float32 arrays; rescale is float64 then cast; normalise in float32.
            let (mean, std) = (config.image_mean.0[c] as f32, config.image_std.0[c] as f32);
            for (v, out) in table.iter_mut().enumerate() {
                let x = if config.do_rescale { (v as f64 * config.rescale_factor) as f32 } else { v as f32 };
                *out = if config.do_normalize { (x - mean) / std } else { x };
            }
        }
        Self { config, output_size: (h as usize, w as usize), lut }
    }

    /// The config this processor follows.
    pub fn config(&self) -> &ClipImageProcessorConfig {
        &self.config
    }

    /// `(height, width)` of every output.
    pub fn output_size(&self) -> (usize, usize) {
        self.output_size
    }

    /// The 8-bit stage: resize and centre crop (with zero padding), before rescaling.
    ///
    /// Only the cropped window of the resized image is computed (see [`resample::resize_window`]), so an
    /// extreme aspect ratio costs no more than a square image.
    pub fn resize_and_crop(&self, img: &RgbImage) -> RgbImage {
        let cfg = &self.config;
        let (rh, rw) = cfg.resize_output_size(img.width, img.height);
        let (ch, cw) = if cfg.do_center_crop { (cfg.crop_size.height, cfg.crop_size.width) } else { (rh, rw) };
        // center_crop: floor division, then the part of the crop that lies inside the image.
        let top = (i64::from(rh) - i64::from(ch)).div_euclid(2);
        let left = (i64::from(rw) - i64::from(cw)).div_euclid(2);
        let clamp = |v: i64, hi: u32| v.clamp(0, i64::from(hi)) as u32;
        let ys = clamp(top, rh)..clamp(top + i64::from(ch), rh);
        let xs = clamp(left, rw)..clamp(left + i64::from(cw), rw);
        let window = resample::resize_window(img, rw, rh, xs.clone(), ys.clone(), cfg.resample.0);
        if (window.width, window.height) == (cw, ch) {
            return window;
        }
        // Zero padding: the window lands at its offset from the crop's top-left corner.
        let mut out = RgbImage::filled(cw, ch, [0, 0, 0]);
        let (dx, dy) = ((i64::from(xs.start) - left) as usize, (i64::from(ys.start) - top) as usize);
        let row = window.width as usize * 3;
        for (y, src) in window.data.chunks_exact(row.max(1)).enumerate() {
            let at = ((dy + y) * cw as usize + dx) * 3;
            out.data[at..at + row].copy_from_slice(src);
        }
        out
    }

    /// Pre-processes one image.
    ///
    /// # Shapes
    /// Returns `[3, height, width]` (CHW) with `(height, width) = self.output_size()`.
    pub fn preprocess(&self, img: &RgbImage) -> Vec<f32> {
        let (h, w) = self.output_size;
        let mut out = vec![0.0; 3 * h * w];
        self.preprocess_into(img, &mut out);
        out
    }

    /// Pre-processes a batch.
    ///
    /// # Shapes
    /// Returns `[N, 3, height, width]` (NCHW), `N = imgs.len()`.
    pub fn preprocess_batch(&self, imgs: &[RgbImage]) -> Vec<f32> {
        let (h, w) = self.output_size;
        let mut out = vec![0.0; imgs.len() * 3 * h * w];
        for (img, chw) in imgs.iter().zip(out.chunks_exact_mut(3 * h * w)) {
            self.preprocess_into(img, chw);
        }
        out
    }

    /// Writes one image's `[3, h, w]` values into `out`.
    fn preprocess_into(&self, img: &RgbImage, out: &mut [f32]) {
        let cropped = self.resize_and_crop(img);
        debug_assert_eq!((cropped.height as usize, cropped.width as usize), self.output_size);
        let plane = out.len() / 3;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in cropped.data.chunks_exact(3).enumerate() {
            r[i] = self.lut[0][usize::from(px[0])];
            g[i] = self.lut[1][usize::from(px[1])];
            b[i] = self.lut[2][usize::from(px[2])];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn defaults_are_clip_vit_b32() {
        let p = ClipImageProcessor::from_json(b"{}").unwrap();
        assert_eq!(p.config(), &ClipImageProcessorConfig::default());
        assert_eq!(p.output_size(), (224, 224));
    }

    #[test]
    fn parses_hf_configs() {
        let json = br#"{"crop_size": 30, "size": 40, "resample": 2, "image_mean": 0.5, "image_std": [0.1, 0.2, 0.3],
                        "do_rescale": false, "image_processor_type": "CLIPImageProcessor", "feature_extractor_type": "x"}"#;
        let c = ClipImageProcessor::from_json(json).unwrap().config().clone();
        assert_eq!(c.crop_size, CropSize { height: 30, width: 30 });
        assert_eq!(c.size, Size::ShortestEdge(40));
        assert_eq!(c.resample, Resample(Filter::Bilinear));
        assert_eq!(c.image_mean, PerChannel([0.5; 3]));
        assert!(!c.do_rescale);
        let hw: ClipImageProcessorConfig =
            serde_json::from_str(r#"{"size": {"height": 5, "width": 7}, "crop_size": {"height": 3, "width": 4}}"#)
                .unwrap();
        assert_eq!(hw.size, Size::Exact { height: 5, width: 7 });
        for bad in [
            r#"{"size": {"shortest_edge": 1, "height": 2}}"#,
            r#"{"size": "big"}"#,
            r#"{"resample": 9}"#,
            r#"{"image_mean": [0.5, 0.5]}"#,
            r#"{"crop_size": {"height": 3}}"#,
            r#"{"do_center_crop": false}"#,
            r#"{"size": 0}"#,
            r#"{"image_std": [1, 0, 1]}"#,
            "not json",
        ] {
            assert!(matches!(ClipImageProcessor::from_json(bad.as_bytes()), Err(Error::InvalidConfig { .. })), "{bad}");
        }
    }

    #[test]
    fn blip_configs_resize_exactly_and_never_crop() {
        let p = ClipImageProcessor::from_json_blip(b"{}").unwrap();
        assert_eq!(p.config(), &ClipImageProcessorConfig::blip_defaults());
        assert_eq!(p.output_size(), (384, 384));
        // A published BLIP config: no do_center_crop / crop_size keys. Read as CLIP, it would crop to 224.
        let published =
            br#"{"do_normalize": true, "do_resize": true, "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "BlipImageProcessor", "image_std": [0.26862954, 0.26130258, 0.27577711],
            "processor_class": "BlipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"height": 384, "width": 384}}"#;
        let c = ClipImageProcessor::from_json_blip(published).unwrap();
        assert!(!c.config().do_center_crop);
        assert_eq!(c.config(), &ClipImageProcessorConfig::blip_defaults());
        assert_eq!(ClipImageProcessor::from_json(published).unwrap().output_size(), (224, 224));
        // 40x10 -> 384x384 exactly: every output pixel comes from the (stretched) input, none is padding.
        let out = c.resize_and_crop(&RgbImage::filled(40, 10, [200, 100, 50]));
        assert_eq!(out, RgbImage::filled(384, 384, [200, 100, 50]));
        // default_to_square: a bare integer size is a square for BLIP, a shortest edge for CLIP.
        let square = ClipImageProcessor::from_json_blip(br#"{"size": 32}"#).unwrap();
        assert_eq!(square.config().size, Size::Exact { height: 32, width: 32 });
        assert_eq!(square.output_size(), (32, 32));
        // Explicit keys still win, null keeps the default (transformers' _set_attributes).
        let cropped = ClipImageProcessor::from_json_blip(br#"{"do_center_crop": true, "crop_size": 300}"#).unwrap();
        assert_eq!(cropped.output_size(), (300, 300));
        let nulls = ClipImageProcessor::from_json_blip(br#"{"do_center_crop": null, "crop_size": null, "size": null}"#);
        assert_eq!(nulls.unwrap().config(), &ClipImageProcessorConfig::blip_defaults());
        // BLIP with an aspect-keeping size and no crop has no fixed output size.
        for bad in [r#"{"size": {"shortest_edge": 384}}"#, r#"{"size": -1}"#, r#"{"do_resize": 1}"#, "[]"] {
            assert!(
                matches!(ClipImageProcessor::from_json_blip(bad.as_bytes()), Err(Error::InvalidConfig { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn with_defaults_overlays_the_given_defaults() {
        let defaults = ClipImageProcessorConfig { do_normalize: false, ..ClipImageProcessorConfig::blip_defaults() };
        let p =
            ClipImageProcessor::from_json_with_defaults(br#"{"size": {"height": 8, "width": 6}}"#, defaults.clone())
                .unwrap();
        assert_eq!(p.config(), &ClipImageProcessorConfig { size: Size::Exact { height: 8, width: 6 }, ..defaults });
        assert_eq!(p.output_size(), (8, 6));
    }

    #[test]
    fn shortest_edge_truncates_like_python() {
        let s = Size::ShortestEdge(224);
        assert_eq!(s.output_size(640, 427), (224, 335)); // int(224 * 640 / 427) = int(335.73)
        assert_eq!(s.output_size(427, 640), (335, 224));
        assert_eq!(s.output_size(300, 300), (224, 224));
        assert_eq!(s.output_size(1, 16384), (3_670_016, 224));
        assert_eq!(s.output_size(0, 5), (0, 0));
    }

    #[test]
    fn shortest_longest_rounds_half_to_even() {
        // 100x40 with shortest 20, longest 25: 100/40*20 = 50 > 25, raw = 25*40/100 = 10.0 -> size 10;
        // the long side is int(raw * 100 / 40) = 25.
        let s = Size::ShortestLongest { shortest_edge: 20, longest_edge: 25 };
        assert_eq!(s.output_size(100, 40), (10, 25));
        // 30x20: 30/20*20 = 30 > 25, raw = 25*20/30 = 16.67 -> 17, long side int(16.67 * 30 / 20) = 25.
        assert_eq!(s.output_size(30, 20), (17, 25));
        // Already at the size and within the longest edge: unchanged.
        let roomy = Size::ShortestLongest { shortest_edge: 20, longest_edge: 100 };
        assert_eq!(roomy.output_size(30, 20), (20, 30));
        // raw = 5 * 5 / 10 = 2.5 -> Python round(2.5) = 2.
        let s = Size::ShortestLongest { shortest_edge: 4, longest_edge: 5 };
        assert_eq!(s.output_size(10, 5), (2, 5));
    }

    #[test]
    fn crop_pads_with_zeros_when_larger() {
        let mut cfg = ClipImageProcessorConfig { do_resize: false, ..Default::default() };
        cfg.crop_size = CropSize { height: 4, width: 3 };
        let p = ClipImageProcessor::new(cfg);
        // 1x1 white image: top = (1 - 4) // 2 = -2, left = (1 - 3) // 2 = -1 -> lands at (1, 2).
        let out = p.resize_and_crop(&RgbImage::filled(1, 1, [255, 255, 255]));
        assert_eq!((out.width, out.height), (3, 4));
        for y in 0..4 {
            for x in 0..3 {
                let expected = if (x, y) == (1, 2) { [255; 3] } else { [0; 3] };
                assert_eq!(out.pixel(x, y), expected, "({x}, {y})");
            }
        }
    }

    #[test]
    fn normalisation_matches_numpy_float_steps() {
        let p = ClipImageProcessor::new(ClipImageProcessorConfig {
            do_resize: false,
            crop_size: CropSize { height: 1, width: 1 },
            ..Default::default()
        });
        let out = p.preprocess(&RgbImage::filled(1, 1, [0, 128, 255]));
        let expect =
            |v: u8, c: usize| ((f64::from(v) / 255.0) as f32 - OPENAI_CLIP_MEAN[c] as f32) / OPENAI_CLIP_STD[c] as f32;
        assert_eq!(out, vec![expect(0, 0), expect(128, 1), expect(255, 2)]);
        let batch = p.preprocess_batch(&[RgbImage::filled(2, 2, [0, 0, 0]), RgbImage::filled(1, 1, [0, 128, 255])]);
        assert_eq!(batch.len(), 6);
        assert_eq!(&batch[3..], &out[..]);
    }

    #[test]
    fn empty_image_gives_zero_padding() {
        let p = ClipImageProcessor::from_json(br#"{"size": 8, "crop_size": 4}"#).unwrap();
        let out = p.resize_and_crop(&RgbImage { width: 0, height: 3, data: Vec::new() });
        assert_eq!(out, RgbImage::filled(4, 4, [0, 0, 0]));
    }
}
