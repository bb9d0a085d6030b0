//! The few building blocks the ported models share, loaded by their published names.
//!
//! [`Dense`] and [`Table`] run either f32 weights (burn tensors on GPU backends, host memory and
//! [`crate::gemm`] on burn-ndarray) or int8 weights ([`crate::int8`]); which one depends only on what the
//! [`VarBuilder`] found and the backend, so one model loader serves checkpoints, random weights and
//! `burn-int8` artifacts.

use std::marker::PhantomData;
use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear};
use burn::tensor::{Bool, Tensor, TensorData, activation, backend::Backend};
use serde::Deserialize;

use crate::int8::QuantizedMatrix;
use crate::weights::Matrix;
use crate::{Result, weights::VarBuilder};

/// `(batch, seq)` of a batch of token ids for an encoder, after checking it: non-empty rows of one length, at
/// most `max_positions` long, every id inside the vocabulary.
pub fn check_token_ids(input_ids: &[Vec<u32>], max_positions: usize, vocab_size: usize) -> Result<(usize, usize)> {
    let batch = input_ids.len();
    let seq = input_ids.first().map_or(0, Vec::len);
    if batch == 0 || seq == 0 || input_ids.iter().any(|r| r.len() != seq) {
        return Err(crate::Error::invalid_input("token batch must be non-empty with rows of equal length"));
    }
    if seq > max_positions {
        return Err(crate::Error::invalid_input(format!(
            "{seq} tokens exceed max_position_embeddings {max_positions}"
        )));
    }
    if let Some(&bad) = input_ids.iter().flatten().find(|&&id| id as usize >= vocab_size) {
        return Err(crate::Error::invalid_input(format!("token id {bad} outside vocabulary of {vocab_size}")));
    }
    Ok((batch, seq))
}

/// A linear layer with f32 or int8 weights.
#[derive(Module, Debug)]
pub enum Dense<B: Backend> {
    /// f32 weights as a burn tensor (GPU backends).
    F32(Linear<B>),
    /// f32 weights on the host, multiplied by [`crate::gemm`] (burn-ndarray: see there why).
    Host(HostLinear<B>),
    Int8(Int8Linear<B>),
}

impl<B: Backend> Dense<B> {
    /// # Shapes
    /// - x: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Dense::F32(linear) => linear.forward(x),
            Dense::Host(linear) => linear.forward(x),
            Dense::Int8(linear) => linear.forward(x),
        }
    }

    /// Whether the weight is int8.
    pub fn is_int8(&self) -> bool {
        matches!(self, Dense::Int8(_))
    }

    /// Whether the weight is in host memory ([`Self::forward_host`] applies).
    pub fn is_host(&self) -> bool {
        matches!(self, Dense::Host(_) | Dense::Int8(_))
    }

    /// The layer on host values: `x` is `[m, in]`, the result `[m, out]`.
    ///
    /// # Panics
    /// For weights on a device ([`Self::is_host`] is false).
    pub fn forward_host(&self, x: &[f32], m: usize) -> Vec<f32> {
        match self {
            Dense::Host(l) => l.weight.matmul(x, m, l.bias.as_deref().map(Vec::as_slice)),
            Dense::Int8(l) => l.weight.matmul(x, m, l.bias.as_deref().map(Vec::as_slice)),
            Dense::F32(_) => panic!("forward_host on a layer whose weight is on a device"),
        }
    }
}

/// A tensor's values in host memory (free when `x` is contiguous and held nowhere else, as burn-ndarray's
/// results are).
pub fn to_host<B: Backend, const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data().convert::<f32>().into_vec::<f32>().expect("f32 tensor data")
}

/// Host values `[dims]` as a tensor on `device` (burn-ndarray takes the vector over without a copy).
pub fn from_host<B: Backend, const D: usize>(values: Vec<f32>, dims: [usize; D], device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, dims), device)
}

/// An attention mask `[batches, 1, queries, keys]` (`true` where a query must not see a key) as host values.
pub fn mask_host<B: Backend>(mask: &Tensor<B, 4, Bool>) -> crate::cpu::Mask {
    let hidden = mask.clone().into_data().into_vec::<bool>().expect("a bool mask");
    crate::cpu::Mask { hidden, batches: mask.dims()[0] }
}

/// `x += f(LayerNorm(x))` on host rows: a pre-norm residual block.
pub fn pre_norm_residual_host<B: Backend>(
    x: &mut [f32],
    norm: &LayerNorm<B>,
    eps: f64,
    f: impl FnOnce(&[f32]) -> Vec<f32>,
) {
    let y = f(&layer_norm_host(norm, eps, x));
    crate::cpu::add_assign(x, &y);
}

/// A `LayerNorm` over host rows ([`crate::cpu::layer_norm`] with the layer's parameters). burn keeps the
/// layer's epsilon private, so the caller passes the one it was configured with.
pub fn layer_norm_host<B: Backend>(norm: &LayerNorm<B>, eps: f64, x: &[f32]) -> Vec<f32> {
    let gamma = to_host(norm.gamma.val());
    let beta = norm.beta.as_ref().map_or_else(|| vec![0.0; gamma.len()], |b| to_host(b.val()));
    crate::cpu::layer_norm(x, &gamma, &beta, eps)
}

/// A linear layer whose f32 weight (`[in, out]`) lives in host memory: on burn-ndarray, where tensors are host
/// memory anyway, the product runs in [`crate::gemm`] without the copies burn-ndarray's `matmul` makes, on a
/// weight laid out at load for this CPU ([`crate::gemm::Weight`]).
#[derive(Module, Debug)]
pub struct HostLinear<B: Backend> {
    #[module(skip)]
    pub weight: Arc<crate::gemm::Weight>,
    #[module(skip)]
    pub bias: Option<Arc<Vec<f32>>>,
    backend: PhantomData<B>,
}

impl<B: Backend> HostLinear<B> {
    /// # Shapes
    /// - x: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        debug_assert_eq!(x.dims()[D - 1], self.weight.k());
        let bias = self.bias.as_deref().map(Vec::as_slice);
        on_host(x, self.weight.n(), |values, m| self.weight.matmul(values, m, bias))
    }
}

/// A linear layer computed on the host: `x`'s values (`m` rows) go to `matmul`, whose `[m, d_out]` result
/// comes back on `x`'s device.
fn on_host<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    d_out: usize,
    matmul: impl FnOnce(&[f32], usize) -> Vec<f32>,
) -> Tensor<B, D> {
    let mut dims = x.dims();
    let device = x.device();
    let m = dims[..D - 1].iter().product();
    let y = matmul(&to_host(x), m);
    dims[D - 1] = d_out;
    from_host(y, dims, &device)
}

/// Whether `B` is the backend whose tensors are host memory and whose `matmul` copies its operands
/// (burn-ndarray, f32): its linear layers keep their weights as [`HostLinear`].
pub(crate) fn host_matmul<B: Backend>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn::backend::NdArray<f32>>()
}

/// A linear layer whose weight is int8 ([`QuantizedMatrix`], W8A8 kernel) and bias f32.
///
/// It computes on the CPU whatever the backend: the input's values are read out (`into_data`), the
/// kernel runs, and the output is built on the input's device. That is free on ndarray and in the
/// browser (wasm), the targets int8 artifacts are for; on a GPU backend it would copy every layer's
/// activations to the host and back.
#[derive(Module, Debug)]
pub struct Int8Linear<B: Backend> {
    /// `[out, in]` codes and one scale per output.
    #[module(skip)]
    pub weight: Arc<QuantizedMatrix>,
    #[module(skip)]
    pub bias: Option<Arc<Vec<f32>>>,
    backend: PhantomData<B>,
}

impl<B: Backend> Int8Linear<B> {
    pub fn new(weight: Arc<QuantizedMatrix>, bias: Option<Vec<f32>>) -> Self {
        Int8Linear { weight, bias: bias.map(Arc::new), backend: PhantomData }
    }

    /// # Shapes
    /// - x: `[..., in]` → `[..., out]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        debug_assert_eq!(x.dims()[D - 1], self.weight.cols());
        let bias = self.bias.as_deref().map(Vec::as_slice);
        on_host(x, self.weight.rows(), |values, m| self.weight.matmul(values, m, bias))
    }
}

/// A PyTorch `nn.Linear` at `vb` as a [`Dense`]: int8 when the source holds (or is making) int8 weights.
pub fn dense<B: Backend>(vb: &VarBuilder<B>, d_in: usize, d_out: usize, bias: bool) -> Result<Dense<B>> {
    dense_shaped(vb, &[d_out, d_in], bias)
}

/// [`dense`] for a weight published in another shape whose first dimension is the output and whose
/// others flatten to the input (a stride = kernel `Conv2d`'s `[out, in, kh, kw]`).
pub fn dense_shaped<B: Backend>(vb: &VarBuilder<B>, weight_shape: &[usize], bias: bool) -> Result<Dense<B>> {
    let d_out = weight_shape[0];
    let weight = vb.matrix("weight", weight_shape, true)?;
    Ok(match weight {
        Matrix::F32(weight) if host_matmul::<B>() => {
            let [d_in, d_out] = weight.dims();
            let values = weight.into_data().into_vec::<f32>().expect("f32 weights");
            let bias = if bias {
                Some(Arc::new(vb.tensor::<1>("bias", [d_out])?.into_data().to_vec::<f32>().expect("f32")))
            } else {
                None
            };
            let weight = Arc::new(crate::gemm::Weight::new(values, d_in, d_out));
            Dense::Host(HostLinear { weight, bias, backend: PhantomData })
        }
        Matrix::F32(weight) => Dense::F32(Linear {
            weight: Param::from_tensor(weight),
            bias: if bias { Some(Param::from_tensor(vb.tensor("bias", [d_out])?)) } else { None },
        }),
        Matrix::Int8(weight) => {
            let bias = if bias {
                Some(vb.tensor::<1>("bias", [d_out])?.into_data().to_vec::<f32>().expect("f32"))
            } else {
                None
            };
            Dense::Int8(Int8Linear::new(weight, bias))
        }
    })
}

/// An embedding table `[num, d]` with f32 or int8 rows.
#[derive(Module, Debug)]
pub enum Table<B: Backend> {
    F32(Param<Tensor<B, 2>>),
    Int8(Int8Table<B>),
}

/// An int8 embedding table: rows are dequantized as they are gathered.
#[derive(Module, Debug)]
pub struct Int8Table<B: Backend> {
    #[module(skip)]
    pub table: Arc<QuantizedMatrix>,
    backend: PhantomData<B>,
}

impl<B: Backend> Table<B> {
    /// `[num, d]`
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Table::F32(t) => t.val().dims(),
            Table::Int8(t) => [t.table.rows(), t.table.cols()],
        }
    }

    /// Rows `ids` (each `< num`, checked by the caller).
    ///
    /// # Shapes
    /// - output: `[ids.len(), d]`
    pub fn gather(&self, ids: &[u32], device: &B::Device) -> Tensor<B, 2> {
        match self {
            Table::F32(t) => {
                let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
                let n = ids.len();
                t.val().select(0, Tensor::<B, 1, burn::tensor::Int>::from_data(TensorData::new(ids, [n]), device))
            }
            Table::Int8(t) => {
                let d = t.table.cols();
                let mut out = vec![0f32; ids.len() * d];
                for (&id, row) in ids.iter().zip(out.chunks_exact_mut(d.max(1))) {
                    t.table.dequantize_row(id as usize, row);
                }
                Tensor::from_data(TensorData::new(out, [ids.len(), d]), device)
            }
        }
    }
}

/// An `nn.Embedding` at `vb` as a [`Table`]: int8 when the source holds (or is making) int8 weights.
pub fn table<B: Backend>(vb: &VarBuilder<B>, num: usize, d: usize) -> Result<Table<B>> {
    Ok(match vb.matrix("weight", &[num, d], false)? {
        Matrix::F32(t) => Table::F32(Param::from_tensor(t)),
        Matrix::Int8(table) => Table::Int8(Int8Table { table, backend: PhantomData }),
    })
}

/// A PyTorch `nn.LayerNorm` at `vb` (`weight` and `bias`, both `[d]`).
pub fn layer_norm<B: Backend>(vb: &VarBuilder<B>, d: usize, eps: f64) -> Result<LayerNorm<B>> {
    let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(vb.device());
    norm.gamma = Param::from_tensor(vb.tensor("weight", [d])?);
    norm.beta = Some(Param::from_tensor(vb.tensor("bias", [d])?));
    Ok(norm)
}

/// An `nn.Embedding` table `[num, d]` at `vb`.
pub fn embedding<B: Backend>(vb: &VarBuilder<B>, num: usize, d: usize) -> Result<Param<Tensor<B, 2>>> {
    Ok(Param::from_tensor(vb.tensor("weight", [num, d])?))
}

/// Non-overlapping `p × p` patches of NCHW pixels, each flattened in a `Conv2d` weight's (channel, row,
/// column) order: a stride-`p` convolution with a `p × p` kernel is then one matmul with the kernel
/// reshaped to `[channels * p * p, out]`.
///
/// # Shapes
/// - pixels: `[batch, channels, height, width]` → `[batch * (height / p) * (width / p), channels * p * p]`
pub fn patches<B: Backend>(pixels: Tensor<B, 4>, p: usize) -> Tensor<B, 2> {
    let [batch, channels, height, width] = pixels.dims();
    let (gh, gw) = (height / p, width / p);
    pixels
        .reshape([batch, channels, gh, p, gw, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([batch * gh * gw, channels * p * p])
}

/// Activation functions named as in `transformers`' `ACT2FN` (`hidden_act` in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`, the original CLIP's approximation.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact GELU (erf).
    #[serde(rename = "gelu")]
    Gelu,
    /// Tanh approximation of GELU.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

impl Activation {
    pub fn forward<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::QuickGelu => x.clone() * activation::sigmoid(x * 1.702),
            Activation::Gelu => activation::gelu(x),
            Activation::GeluTanh => activation::gelu_approximate(x),
            Activation::Relu => activation::relu(x),
            Activation::Silu => activation::silu(x),
        }
    }

    /// [`Self::forward`] on host values, in place ([`crate::cpu`]).
    pub fn forward_host(self, x: &mut [f32]) {
        match self {
            Activation::QuickGelu => crate::cpu::quick_gelu(x),
            Activation::Gelu => crate::cpu::gelu(x),
            Activation::GeluTanh => crate::cpu::gelu_tanh(x),
            Activation::Relu => crate::cpu::relu(x),
            Activation::Silu => crate::cpu::silu(x),
        }
    }
}

/// Two linear layers with an activation between them (`fc1`, `fc2` in CLIP and BLIP's ViT); f32 or
/// int8 as the source holds them (BLIP's checkpoints are always f32).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub fc1: Dense<B>,
    pub fc2: Dense<B>,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> Mlp<B> {
    pub fn load(vb: &VarBuilder<B>, hidden: usize, intermediate: usize, act: Activation) -> Result<Self> {
        Ok(Mlp {
            fc1: dense(&vb.pp("fc1"), hidden, intermediate, true)?,
            fc2: dense(&vb.pp("fc2"), intermediate, hidden, true)?,
            act,
        })
    }

    /// # Shapes
    /// - x: `[batch, seq, hidden]` → `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }

    /// Whether both layers' weights are in host memory ([`Self::forward_host`] applies).
    pub fn is_host(&self) -> bool {
        self.fc1.is_host() && self.fc2.is_host()
    }

    /// [`Self::forward`] on host rows: `x` is `[rows, hidden]`.
    pub fn forward_host(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut h = self.fc1.forward_host(x, rows);
        self.act.forward_host(&mut h);
        self.fc2.forward_host(&h, rows)
    }
}
