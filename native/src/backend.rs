//! Which burn backend runs the models, chosen at run time among those compiled in.

use clap::ValueEnum;

/// A compute device the binary may have been built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn-ndarray on the CPU (always built by default).
    Cpu,
    /// burn-wgpu: Vulkan, Metal, DX12 (or Mesa lavapipe on a CPU). Needs the `wgpu` feature.
    Wgpu,
    /// burn-cuda on NVIDIA GPUs. Needs the `cuda` feature.
    Cuda,
}

/// Call `$body` with type alias `B` set to the chosen backend and `device` to its device.
///
/// This crate's own unit tests (`cfg(test)`) run no model on a GPU: without the wgpu and cuda arms their
/// build does not compile every model for those backends a second time (~6 CPU-minutes of the CI's
/// cold build). The integration tests, the binary and the benchmarks link the library with all arms.
macro_rules! with_backend {
    ($kind:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $kind {
            #[cfg(feature = "ndarray")]
            $crate::backend::DeviceKind::Cpu => {
                type $B = burn::backend::NdArray<f32>;
                let $device = burn::backend::ndarray::NdArrayDevice::Cpu;
                $body
            }
            #[cfg(all(feature = "wgpu", not(test)))]
            $crate::backend::DeviceKind::Wgpu => {
                type $B = burn::backend::Wgpu<f32, i32>;
                let $device = burn::backend::wgpu::WgpuDevice::default();
                $body
            }
            #[cfg(all(feature = "cuda", not(test)))]
            $crate::backend::DeviceKind::Cuda => {
                type $B = burn::backend::Cuda<f32, i32>;
                let $device = burn::backend::cuda::CudaDevice::default();
                $body
            }
            #[allow(unreachable_patterns)]
            other => Err(anyhow::anyhow!(
                "device `{}` is not compiled into this binary (rebuild with `--features {}`)",
                format!("{other:?}").to_lowercase(),
                format!("{other:?}").to_lowercase()
            )),
        }
    }};
}
pub(crate) use with_backend;
