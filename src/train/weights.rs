//! Saving and loading weights as `.safetensors`, checked: loading verifies every tensor the
//! model expects is in the file with the right shape and that the file holds nothing else,
//! and reports the offending tensor by name instead of panicking. The keys are dfdx's (and
//! PyTorch's) dotted paths, e.g. `dense_1.weight`, `0.bias` for a tuple model.

use std::fmt;
use std::path::{Path, PathBuf};

use dfdx::nn::tensor_collection::{
    RecursiveWalker, ScalarOptions, TensorCollection, TensorOptions, TensorVisitor, ViewTensorMut,
    ViewTensorName, ViewTensorRef,
};
use dfdx::prelude::*;
use dfdx::tensor::safetensors::SafeDtype;
use ::safetensors::tensor::{Dtype as SDtype, SafeTensors, TensorView};

use crate::Float;

/// Why weights could not be saved or loaded. Loading is all-or-nothing: on any error the
/// model is left unchanged.
#[derive(Debug)]
pub enum WeightsError {
    /// The file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    Format {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader reported.
        message: String,
    },
    /// The model has a tensor the file lacks.
    Missing {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// The file has a tensor the model does not.
    Unexpected {
        /// The file.
        path: PathBuf,
        /// The key in the file.
        name: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// A tensor's shape in the file differs from the model's.
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        name: String,
        /// Shape in the model.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor's element type cannot be read (only `F32` and `F64` are supported; values
    /// are converted to the model's type).
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        name: String,
        /// The dtype in the file.
        found: String,
    },
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            WeightsError::Format { path, message } => {
                write!(f, "{}: not a valid safetensors file: {message}", path.display())
            }
            WeightsError::Missing { path, name, expected } => write!(
                f,
                "{}: missing tensor `{name}` (the model expects shape {expected:?})",
                path.display()
            ),
            WeightsError::Unexpected { path, name, shape } => write!(
                f,
                "{}: unexpected tensor `{name}` of shape {shape:?}: the model has no such tensor",
                path.display()
            ),
            WeightsError::ShapeMismatch { path, name, expected, found } => write!(
                f,
                "{}: tensor `{name}` has shape {found:?} in the file but {expected:?} in the model",
                path.display()
            ),
            WeightsError::Dtype { path, name, found } => write!(
                f,
                "{}: tensor `{name}` has dtype {found}; only F32 and F64 can be loaded",
                path.display()
            ),
        }
    }
}

impl std::error::Error for WeightsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WeightsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

struct Entry {
    name: String,
    shape: Vec<usize>,
    dtype: SDtype,
    bytes: Vec<u8>,
    scalar: bool,
}

struct Collect {
    entries: Vec<Entry>,
    with_data: bool,
}

impl<E: Dtype + SafeDtype, D: Device<E>> TensorVisitor<E, D> for Collect {
    type Viewer = (ViewTensorRef, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        let bytes = if self.with_data {
            t.as_vec().into_iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            Vec::new()
        };
        let shape = t.shape().concrete().into_iter().collect();
        self.entries.push(Entry { name, shape, dtype: E::safe_dtype(), bytes, scalar: false });
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(
        &mut self,
        _: ScalarOptions<N>,
        (n, name): (&N, String),
    ) -> Result<Option<N>, D::Err> {
        let v = n.to_f64().unwrap_or(f64::NAN);
        self.entries.push(Entry {
            name,
            shape: Vec::new(),
            dtype: SDtype::F64,
            bytes: v.to_le_bytes().to_vec(),
            scalar: true,
        });
        Ok(None)
    }
}

fn collect<M: TensorCollection<E, D>, E: Dtype + SafeDtype, D: Device<E>>(
    model: &M,
    with_data: bool,
) -> Result<Vec<Entry>, D::Err> {
    let mut c = Collect { entries: Vec::new(), with_data };
    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut c })?;
    Ok(c.entries)
}

/// Saves every tensor of `model` (trainable weights and running statistics) and its scalar
/// settings to a `.safetensors` file, in dfdx's layout (readable by dfdx's
/// `load_safetensors` and by PyTorch's `safetensors.torch.load_file`).
pub fn save<M, E, D>(model: &M, path: impl AsRef<Path>) -> Result<(), WeightsError>
where
    M: TensorCollection<E, D>,
    E: Float + SafeDtype,
    D: Device<E>,
{
    let path = path.as_ref();
    let fmt_err = |message: String| WeightsError::Format { path: path.into(), message };
    let entries = collect(model, true).map_err(|e| fmt_err(format!("device error: {e:?}")))?;
    let mut views = Vec::with_capacity(entries.len());
    for e in &entries {
        let v = TensorView::new(e.dtype, e.shape.clone(), &e.bytes).map_err(|x| fmt_err(format!("{x:?}")))?;
        views.push((e.name.clone(), v));
    }
    let bytes = ::safetensors::tensor::serialize(views, &None).map_err(|x| fmt_err(format!("{x:?}")))?;
    std::fs::write(path, bytes).map_err(|source| WeightsError::Io { path: path.into(), source })
}

fn decode<E: Float>(view: &TensorView<'_>) -> Option<Vec<E>> {
    let d = view.data();
    match view.dtype() {
        SDtype::F32 => Some(
            d.chunks_exact(4)
                .map(|c| E::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or_else(E::nan))
                .collect(),
        ),
        SDtype::F64 => Some(
            d.chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    E::from_f64(f64::from_le_bytes(a)).unwrap_or_else(E::nan)
                })
                .collect(),
        ),
        _ => None,
    }
}

struct Assign<'a> {
    file: &'a SafeTensors<'a>,
}

impl<E: Float, D: Device<E>> TensorVisitor<E, D> for Assign<'_> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&mut Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        // Presence, shape and dtype were checked before any assignment.
        if let Some(values) = self.file.tensor(&name).ok().and_then(|v| decode::<E>(&v)) {
            if values.len() == t.shape().num_elements() {
                t.copy_from(&values);
            }
        }
        Ok(None)
    }

    fn visit_scalar<N: num_traits::NumCast>(
        &mut self,
        _: ScalarOptions<N>,
        (n, name): (&mut N, String),
    ) -> Result<Option<N>, D::Err> {
        if let Some(v) = self.file.tensor(&name).ok().and_then(|v| decode::<f64>(&v)) {
            if let Some(x) = v.first().and_then(|x| N::from(*x)) {
                *n = x;
            }
        }
        Ok(None)
    }
}

/// Loads weights saved by [`save`] (or any safetensors file with the same keys) into
/// `model`.
///
/// Checks first, then assigns: every tensor the model has must be in the file with the same
/// shape ([`WeightsError::Missing`], [`WeightsError::ShapeMismatch`]), and the file may hold
/// nothing the model lacks ([`WeightsError::Unexpected`]). `F32` and `F64` files load into
/// models of either type. Scalar settings (e.g. batch norm's momentum) that are absent from
/// the file keep their current values. On error the model is unchanged. Never panics.
pub fn load<M, E, D>(model: &mut M, path: impl AsRef<Path>) -> Result<(), WeightsError>
where
    M: TensorCollection<E, D>,
    E: Float + SafeDtype,
    D: Device<E>,
{
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| WeightsError::Format { path: path.into(), message: format!("{e:?}") })?;
    let expected = collect(&*model, false)
        .map_err(|e| WeightsError::Format { path: path.into(), message: format!("device error: {e:?}") })?;

    for e in &expected {
        match file.tensor(&e.name) {
            Err(_) if e.scalar => {}
            Err(_) => {
                return Err(WeightsError::Missing { path: path.into(), name: e.name.clone(), expected: e.shape.clone() })
            }
            Ok(v) => {
                if !matches!(v.dtype(), SDtype::F32 | SDtype::F64) {
                    return Err(WeightsError::Dtype { path: path.into(), name: e.name.clone(), found: format!("{:?}", v.dtype()) });
                }
                let found: Vec<usize> = v.shape().to_vec();
                let ok = if e.scalar { found.iter().product::<usize>() == 1usize } else { found == e.shape };
                if !ok {
                    return Err(WeightsError::ShapeMismatch {
                        path: path.into(),
                        name: e.name.clone(),
                        expected: e.shape.clone(),
                        found,
                    });
                }
            }
        }
    }
    let mut names: Vec<&String> = file.names();
    names.sort();
    for name in names {
        if !expected.iter().any(|e| &e.name == name) {
            let shape = file.tensor(name).map(|v| v.shape().to_vec()).unwrap_or_default();
            return Err(WeightsError::Unexpected { path: path.into(), name: name.clone(), shape });
        }
    }

    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut Assign { file: &file } })
        .map_err(|e| WeightsError::Format { path: path.into(), message: format!("device error: {e:?}") })?;
    Ok(())
}
