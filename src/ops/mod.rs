//! Differentiable ops typenet adds to dfdx 0.13 on stable Rust, each with its own backward
//! pass, a fast `Cpu` kernel and a path composed of dfdx ops for other devices.
//!
//! Every kernel stands on [`floor`] (scratch buffers, the one GEMM door, CPU-feature
//! detection, window geometry) and takes plain parameters: no kernel knows a layer.

pub mod attention;
pub mod conv;
pub mod dense;
pub mod dropout;

pub mod floor;
pub mod layer_norm;
pub mod pool;
pub mod radial_basis;
pub mod relu;
pub mod scatter;
pub mod rnn;

pub use attention::{attention_composed, AttentionKernel, AttentionSpec};
pub use conv::{conv1d, conv2d, ConvKernel};
pub use dense::{dense, DenseKernel};
pub use dropout::{dropout, DropoutKernel};

pub use floor::buf::clear_scratch_buffers;
pub use floor::Window2D;
pub use layer_norm::{add_layer_norm, layer_norm, layer_norm_composed, LayerNormKernel};
pub use pool::{global_pool, pool1d, pool2d, PoolKernel, PoolKind};
pub use relu::{relu, ReluKernel};
pub use radial_basis::{radial_basis_composed, radial_basis_species_composed, RadialBasisKernel, RadialBasisParams, Species};
pub use scatter::{Aggr, GraphKernel};
