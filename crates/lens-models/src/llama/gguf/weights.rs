//! A LLaMA GGUF file's tensors under their HuggingFace names, dequantized one at a time when a module asks.
//!
//! Reference: the names `convert_hf_to_gguf.py` writes for `LlamaForCausalLM` (gguf-py's `TensorNameMap`) and its
//! `LlamaModel.permute` (llama.cpp c392e5094), undone as transformers undoes it
//! (`LlamaTensorProcessor._reverse_permute_weights`, transformers v5.23.0 `modeling_gguf_pytorch_utils.py`).
//!
//! llama.cpp stores `attn_q` and `attn_k` with the rows of each head reordered for its interleaved (GPT-J style)
//! rotary: the HF row `h·d + j·d/2 + i` (head `h`, half `j` ∈ {0, 1}, `i` < d/2) is stored as row
//! `h·d + 2i + j`. [`unpermute_rows`] puts the rows back, so the same `rotate_half` attention runs on them.

use crate::gguf::{self, Gguf};
use crate::llama::LlamaConfig;
use crate::weights::{TensorSource, VarBuilder};
use crate::{Error, Result};

use super::metadata::gguf_error;

/// The GGUF name of a tensor the LLaMA loader asks for by its HF name (`model.layers.3.mlp.up_proj.weight` →
/// `blk.3.ffn_up.weight`); `None` for a name LLaMA GGUF files have no place for.
pub fn gguf_name(hf_name: &str) -> Option<String> {
    let fixed = match hf_name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let gguf_module = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf_module}.{suffix}"))
}

/// `convert_hf_to_gguf.py`'s `LlamaModel.permute` on the rows of a row-major `[rows, cols]` matrix (a bias is
/// `cols = 1`): per head of `rows / n_head` rows, `reshape(2, d/2).swapaxes(0, 1)`.
pub fn permute_rows(values: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    reorder_rows(values, rows, cols, n_head, false)
}

/// The exact inverse of [`permute_rows`]: llama.cpp's q/k row order back to the HF one.
pub fn unpermute_rows(values: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    reorder_rows(values, rows, cols, n_head, true)
}

fn reorder_rows(values: &[f32], rows: usize, cols: usize, n_head: usize, inverse: bool) -> Vec<f32> {
    assert!(n_head > 0 && rows % (2 * n_head) == 0 && values.len() == rows * cols, "rows are whole head halves");
    let head = rows / n_head;
    let half = head / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                let hf = h * head + j * half + i;
                let llama_cpp = h * head + 2 * i + j;
                let (from, to) = if inverse { (llama_cpp, hf) } else { (hf, llama_cpp) };
                out[to * cols..(to + 1) * cols].copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// The tensors of a LLaMA GGUF file as the HF checkpoint would hold them: renamed, q/k rows un-permuted, every
/// type dequantized to f32 (F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K; another type is
/// [`Error::UnsupportedDtype`] naming the tensor). Each tensor is dequantized when the loader reads it and
/// handed over, so the model's f32 weights are never held twice.
pub struct GgufLlamaWeights<'a, D> {
    gguf: &'a Gguf<D>,
    num_attention_heads: usize,
    num_key_value_heads: usize,
}

impl<'a, D: AsRef<[u8]>> GgufLlamaWeights<'a, D> {
    /// Read `gguf`'s tensors for a model of `config` (its head counts decide the q/k un-permutation).
    pub fn new(gguf: &'a Gguf<D>, config: &LlamaConfig) -> Self {
        GgufLlamaWeights {
            gguf,
            num_attention_heads: config.num_attention_heads,
            num_key_value_heads: config.num_key_value_heads,
        }
    }

    /// A [`VarBuilder`] over these tensors: `LlamaForCausalLM::load(&weights.builder(device), config)`.
    pub fn builder<B: burn::tensor::backend::Backend>(&'a self, device: &B::Device) -> VarBuilder<'a, B> {
        VarBuilder::from_source(self, device)
    }

    fn heads_of(&self, gguf_name: &str) -> Option<usize> {
        let module = gguf_name.split('.').nth(2)?;
        match module {
            "attn_q" => Some(self.num_attention_heads),
            "attn_k" => Some(self.num_key_value_heads),
            _ => None,
        }
    }
}

impl<D: AsRef<[u8]>> TensorSource for GgufLlamaWeights<'_, D> {
    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|n| self.gguf.tensor(&n).is_some())
    }

    fn f32_values(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let gguf_name = gguf_name(name).ok_or_else(|| Error::MissingTensor { name: name.to_string() })?;
        let info = self.gguf.tensor(&gguf_name).ok_or_else(|| Error::MissingTensor { name: gguf_name.clone() })?;
        let found = info.shape();
        if found != expected {
            return Err(Error::ShapeMismatch { name: gguf_name, expected: expected.to_vec(), found });
        }
        let (values, _) = self.gguf.tensor_f32(&gguf_name).map_err(gguf_error)?;
        Ok(match self.heads_of(&gguf_name) {
            Some(n_head) => {
                let rows = expected.first().copied().unwrap_or(1);
                let cols = expected.iter().skip(1).product::<usize>();
                if rows % (2 * n_head) != 0 {
                    return Err(gguf_error(gguf::Error::BadDims {
                        tensor: gguf_name,
                        dims: info.dims().to_vec(),
                        problem: format!("{rows} rows do not split into {n_head} heads of two halves"),
                    }));
                }
                unpermute_rows(&values, rows, cols, n_head)
            }
            None => values,
        })
    }
}
