//! The two tiny CLIP checkpoints and what `transformers` computed with them, compiled into the test
//! binary (wasm32 has no file system): shared by the fp32 and the int8 parity tests.

use lens_models::clip::ClipFiles;
use lens_models::weights::Weights;

macro_rules! fixture {
    ($model:literal, $file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/fixtures/", $model, "/", $file)).as_slice()
    };
}

/// A tiny checkpoint and what `transformers` computed with it.
pub struct Fixture {
    pub name: &'static str,
    pub files: ClipFiles,
    pub reference: Weights,
    pub meta: serde_json::Value,
}

macro_rules! load_fixture {
    ($model:literal) => {
        Fixture {
            name: $model,
            files: ClipFiles {
                config: fixture!($model, "config.json").to_vec(),
                weights: vec![("model.safetensors".into(), fixture!($model, "model.safetensors").to_vec())],
                tokenizer: fixture!($model, "tokenizer.json").to_vec(),
                tokenizer_config: Some(fixture!($model, "tokenizer_config.json").to_vec()),
                preprocessor_config: fixture!($model, "preprocessor_config.json").to_vec(),
            },
            reference: Weights::from_buffers(vec![(
                "reference.safetensors".into(),
                fixture!($model, "reference.safetensors").to_vec(),
            )])
            .unwrap(),
            meta: serde_json::from_slice(fixture!($model, "reference.json")).unwrap(),
        }
    };
}

impl Fixture {
    /// A reference tensor's values and shape.
    pub fn tensor(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let shape = self.reference.shape(name).unwrap_or_else(|| panic!("{}: no `{name}`", self.name)).to_vec();
        (self.reference.f32_values(name, &shape).unwrap(), shape)
    }
}

pub fn fixtures() -> Vec<Fixture> {
    vec![load_fixture!("clip-tiny-quickgelu"), load_fixture!("clip-tiny-gelu")]
}
