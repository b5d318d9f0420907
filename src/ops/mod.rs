//! Differentiable ops typenet adds to dfdx 0.13 on stable Rust, each with its own backward
//! pass, a fast `Cpu` kernel and a path composed of dfdx ops for other devices.

pub mod conv;
pub(crate) mod gemm;
pub mod pool;
pub mod radial_basis;
pub mod scatter;

pub use conv::{conv1d, conv2d, ConvKernel, Window2D};
pub use pool::{global_pool, pool1d, pool2d, PoolKernel, PoolKind};
pub use radial_basis::{radial_basis_composed, RadialBasisKernel};
pub use scatter::{Aggr, GraphKernel};
pub mod rnn;
