//! The kernel floor: what every CPU kernel in [`crate::ops`] stands on, and nothing that
//! knows a layer.
//!
//! - [`buf`]: the one scratch-buffer pool (per element type) all CPU kernels draw from;
//! - [`gemm`]: the one GEMM door, [`gemm::matmul`] ("multiply matrices"), with typenet's
//!   AVX-512 f32 microkernel and the `gemm` crate behind it;
//! - [`data`]: the training batch marked as data, so that ops skip the gradient nothing reads;
//! - [`cpu`]: CPU-feature detection ([`cpu::Simd`]) and the per-thread override tests use to
//!   force a lesser SIMD path;
//! - [`share`]: one call's tasks shared between the calling thread and rayon's threads (the
//!   split GEMM, the kernels' parallel loops), the caller working instead of sleeping;
//! - [`upload`]: host data into tensors whose buffers come from (and return to) dfdx's
//!   allocation cache, so per-step uploads do not grow it;
//! - [`window`]: sliding-window geometry ([`Window2D`], output sizes, [`window::valid_range`])
//!   shared by convolution, pooling and anything that slides a window.
//!
//! Dependency direction: `layers` → `ops::<kernel>` → `ops::floor`; the floor imports no kernel
//! and no layer.

pub mod buf;
pub mod cpu;
pub mod data;
pub(crate) mod gemm;
pub(crate) mod share;
pub mod upload;
pub mod window;

pub use window::{out_len, out_len_asym, pad_after, Window2D};
