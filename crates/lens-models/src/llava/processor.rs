//! `LlavaProcessor`: prompt text with `<image>` placeholders and images in, input ids and pixel values out.
//!
//! Reference: `LlavaProcessor` in `transformers/models/llava/processing_llava.py` and `ProcessorMixin.__call__`,
//! `validate_inputs`, `get_text_with_replacements` in `transformers/processing_utils.py` (transformers v5.23.0):
//!
//! - the images go through the checkpoint's image processor (`CLIPImageProcessor`: shortest-side resize, centre
//!   crop, rescale, normalise; [`ClipImageProcessor`], exact);
//! - the prompt must hold exactly as many `<image>` as there are images (else the reference's error);
//! - each `<image>` becomes `(height // patch_size) * (width // patch_size) + num_additional_image_tokens`
//!   placeholders, one fewer with the `default` strategy, then the text is tokenized (BOS added).
//!
//! `<image>` is an added token of the tokenizer: the text between placeholders is tokenized the same whether a
//! placeholder is repeated or not, so [`LlavaProcessor::encode`] tokenizes the prompt once and repeats the
//! placeholder id (no 576-fold longer text to tokenize); [`LlavaProcessor::expand_prompt`] gives the expanded text
//! itself, and the tests check both against the reference.
//!
//! Settings come from `processor_config.json` (`patch_size`, `vision_feature_select_strategy`,
//! `num_additional_image_tokens`, `image_token`), and the image processor's from `preprocessor_config.json` as
//! llava-hf publish it, or from `processor_config.json`'s `image_processor` object as transformers 5 saves it.
//! A checkpoint without `processor_config.json` gets them from `config.json` (patch size and strategy of the
//! model, one additional token: CLIP's class token).

use lens_core::image::RgbImage;
use lens_core::preprocess::ClipImageProcessor;
use serde::Deserialize;
use serde_json::Value;

use super::config::{FeatureSelectStrategy, LlavaConfig};
use crate::tokenizer::{HfTokenizer, MAX_TEXT_BYTES};
use crate::{Error, Result};

/// Most images in one prompt. LLaVA-1.5 gives each 576 positions, so a 4096-token context holds 7; the limit
/// bounds the pixels decoded and the vision work a single request can ask for.
pub const MAX_IMAGES: usize = 16;

/// `processor_config.json` as published; unknown keys are ignored.
#[derive(Deserialize, Default)]
struct RawProcessorConfig {
    #[serde(default)]
    patch_size: Option<usize>,
    #[serde(default)]
    vision_feature_select_strategy: Option<FeatureSelectStrategy>,
    #[serde(default)]
    num_additional_image_tokens: Option<usize>,
    #[serde(default)]
    image_token: Option<String>,
    #[serde(default)]
    image_processor: Option<Value>,
}

/// The checkpoint's processor: image processor, tokenizer and placeholder expansion.
#[derive(Debug, Clone)]
pub struct LlavaProcessor {
    pub image_processor: ClipImageProcessor,
    pub tokenizer: HfTokenizer,
    /// The placeholder text (`<image>`) and its id.
    pub image_token: String,
    pub image_token_id: u32,
    pub patch_size: usize,
    pub num_additional_image_tokens: usize,
    pub vision_feature_select_strategy: FeatureSelectStrategy,
}

impl LlavaProcessor {
    /// Build from `tokenizer.json`, `processor_config.json` and `preprocessor_config.json` (either may be absent,
    /// see the module docs), checked against the model's `config`: the images must be the vision tower's size
    /// and the placeholders as many as the features of one image.
    pub fn load(
        config: &LlavaConfig,
        tokenizer_json: &[u8],
        processor_config: Option<&[u8]>,
        preprocessor_config: Option<&[u8]>,
    ) -> Result<Self> {
        let raw: RawProcessorConfig = match processor_config {
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| Error::config("processor_config.json", e))?,
            None => RawProcessorConfig::default(),
        };
        let image_processor = match (&raw.image_processor, preprocessor_config) {
            (Some(nested), _) => ClipImageProcessor::from_json(nested.to_string().as_bytes()),
            (None, Some(bytes)) => ClipImageProcessor::from_json(bytes),
            (None, None) => {
                return Err(Error::config(
                    "preprocessor_config.json",
                    "missing (and processor_config.json has no `image_processor`)",
                ));
            }
        }
        .map_err(|e| Error::config("preprocessor_config.json", e))?;
        crate::files::check_image_size(&image_processor, config.vision_config.image_size)?;
        // Long enough never to cut a text within MAX_TEXT_BYTES (see `LlamaPipeline::load`).
        let tokenizer = HfTokenizer::unpadded(tokenizer_json, MAX_TEXT_BYTES + 16)?;
        let image_token = raw.image_token.unwrap_or_else(|| "<image>".to_string());
        let image_token_id = tokenizer.token_to_id(&image_token).ok_or_else(|| Error::Tokenizer {
            message: format!("the image token `{image_token}` is not in the vocabulary"),
        })?;
        if image_token_id != config.image_token_id {
            return Err(Error::config(
                "config.json",
                format!(
                    "image_token_index is {} but the tokenizer's `{image_token}` is {image_token_id}",
                    config.image_token_id
                ),
            ));
        }
        let processor = LlavaProcessor {
            image_processor,
            tokenizer,
            image_token,
            image_token_id,
            patch_size: raw.patch_size.unwrap_or(config.vision_config.patch_size),
            num_additional_image_tokens: raw.num_additional_image_tokens.unwrap_or(if processor_config.is_some() {
                0 // `LlavaProcessor(num_additional_image_tokens=0)`
            } else {
                1
            }),
            vision_feature_select_strategy: raw
                .vision_feature_select_strategy
                .unwrap_or(config.vision_feature_select_strategy),
        };
        if processor.patch_size == 0 {
            return Err(Error::config("processor_config.json", "patch_size must be positive"));
        }
        let (per_image, features) = (processor.tokens_per_image(), config.image_features_per_image());
        if per_image != features {
            return Err(Error::config(
                "processor_config.json",
                format!(
                    "expands <image> to {per_image} placeholders but the model gives {features} features per image"
                ),
            ));
        }
        Ok(processor)
    }

    /// Placeholders per image (`replace_image_token`).
    pub fn tokens_per_image(&self) -> usize {
        let (h, w) = self.image_processor.output_size();
        let n = (h / self.patch_size) * (w / self.patch_size) + self.num_additional_image_tokens;
        match self.vision_feature_select_strategy {
            FeatureSelectStrategy::Default => n.saturating_sub(1),
            FeatureSelectStrategy::Full => n,
        }
    }

    /// `<image>` occurrences in `text`, checked against the number of images (`validate_inputs`).
    fn check_image_count(&self, text: &str, images: usize) -> Result<usize> {
        if images > MAX_IMAGES {
            return Err(Error::invalid_input(format!("{images} images in one prompt; at most {MAX_IMAGES}")));
        }
        let found = text.matches(self.image_token.as_str()).count();
        if found != images {
            return Err(Error::invalid_input(if images == 0 {
                format!("Found {found} {} tokens in the text but no images were passed.", self.image_token)
            } else {
                format!(
                    "The total number of {t} tokens in the prompts should be the same as the number of images \
                     passed. Found total {found} {t} tokens and {images} images.",
                    t = self.image_token
                )
            }));
        }
        Ok(found)
    }

    /// The prompt as the processor tokenizes it: each `<image>` repeated [`Self::tokens_per_image`] times.
    pub fn expand_prompt(&self, text: &str, images: usize) -> Result<String> {
        self.check_image_count(text, images)?;
        if images == 0 {
            return Ok(text.to_string());
        }
        Ok(text.replace(self.image_token.as_str(), &self.image_token.repeat(self.tokens_per_image())))
    }

    /// `processor(text, images).input_ids` for a prompt with `images` images: BOS, the text's tokens, each
    /// `<image>` expanded.
    pub fn encode(&self, text: &str, images: usize) -> Result<Vec<u32>> {
        self.encode_with(text, images, true)
    }

    /// [`Self::encode`], with the tokenizer's special tokens (BOS) added or not (`add_special_tokens`).
    pub fn encode_with(&self, text: &str, images: usize, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.check_image_count(text, images)?;
        let ids = self.tokenizer.encode_with(text, add_special_tokens)?;
        let found = ids.iter().filter(|&&t| t == self.image_token_id).count();
        if found != images {
            // Only if `<image>` were not an added token of its own (it always is in LLaVA checkpoints).
            return Err(Error::Tokenizer {
                message: format!("`{}` did not tokenize to its own id in {text:?}", self.image_token),
            });
        }
        let per_image = self.tokens_per_image();
        let mut out = Vec::with_capacity(ids.len() + images * per_image.saturating_sub(1));
        for id in ids {
            if id == self.image_token_id {
                out.extend(std::iter::repeat_n(id, per_image));
            } else {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// `processor(images=...).pixel_values`.
    ///
    /// # Shapes
    /// Returns `[images, 3, height, width]` (NCHW) and the shape.
    pub fn pixel_values(&self, images: &[RgbImage]) -> (Vec<f32>, [usize; 4]) {
        let (h, w) = self.image_processor.output_size();
        (self.image_processor.preprocess_batch(images), [images.len(), 3, h, w])
    }
}
