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
    /// A tensor in the file holds NaN or an infinity.
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        name: String,
        /// Index of the first bad value (row-major).
        index: usize,
    },
    /// A finite value in the file does not fit the model's element type (an `F64` value
    /// beyond `f32`'s range loading into an `f32` model).
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        name: String,
        /// Index of the first bad value (row-major).
        index: usize,
        /// The value.
        value: f64,
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
            WeightsError::NonFinite { path, name, index } => write!(
                f,
                "{}: tensor `{name}` holds NaN or infinity (at index {index})",
                path.display()
            ),
            WeightsError::OutOfRange { path, name, index, value } => write!(
                f,
                "{}: tensor `{name}` holds {value:e} (at index {index}), beyond the range of the model's element type",
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

/// Saves every tensor of `model` (trainable weights and running statistics) to a
/// `.safetensors` file under PyTorch's keys (`dense_1.weight`, `batch_norm_1.running_var`),
/// so the file loads into the matching PyTorch module with `load_state_dict(strict=True)`.
/// Scalar settings (batch norm's `epsilon`/`momentum`, dropout's `p`) are part of the
/// architecture and are not written.
///
/// The write is atomic: the file is written beside `path` under a temporary name and then
/// renamed over it, so a failed save never destroys the previous file.
pub fn save<M, E, D>(model: &M, path: impl AsRef<Path>) -> Result<(), WeightsError>
where
    M: TensorCollection<E, D>,
    E: Float + SafeDtype,
    D: Device<E>,
{
    save_with_preprocessing(model, path, &Preprocessing::default())
}

/// What a fresh process needs besides the weights to predict on raw inputs: the
/// standardiser fitted on the training data and the class names. Stored in the
/// safetensors file's metadata (not as tensors: PyTorch still loads the file strictly).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preprocessing {
    /// Per-feature mean and standard deviation (see [`Standardizer`](crate::data::Standardizer)).
    pub standardizer: Option<crate::data::Standardizer<f64>>,
    /// Class names, by class index.
    pub labels: Vec<String>,
}

fn join(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:e}")).collect::<Vec<_>>().join(",")
}

/// [`save`] plus the [`Preprocessing`] (read back with [`load_preprocessing`]).
pub fn save_with_preprocessing<M, E, D>(model: &M, path: impl AsRef<Path>, pre: &Preprocessing) -> Result<(), WeightsError>
where
    M: TensorCollection<E, D>,
    E: Float + SafeDtype,
    D: Device<E>,
{
    let path = path.as_ref();
    let mut meta = std::collections::HashMap::new();
    if let Some(s) = &pre.standardizer {
        meta.insert("typenet.standardizer.mean".to_string(), join(&s.mean));
        meta.insert("typenet.standardizer.std".to_string(), join(&s.std));
    }
    if !pre.labels.is_empty() {
        meta.insert("typenet.labels".to_string(), pre.labels.join("\n"));
    }
    let meta = (!meta.is_empty()).then_some(meta);
    let fmt_err = |message: String| WeightsError::Format { path: path.into(), message };
    let entries = collect(model, true).map_err(|e| fmt_err(format!("device error: {e:?}")))?;
    let mut views = Vec::with_capacity(entries.len());
    for e in entries.iter().filter(|e| !e.scalar) {
        let v = TensorView::new(e.dtype, e.shape.clone(), &e.bytes).map_err(|x| fmt_err(format!("{x:?}")))?;
        views.push((e.name.clone(), v));
    }
    let bytes = ::safetensors::tensor::serialize(views, &meta).map_err(|x| fmt_err(format!("{x:?}")))?;
    write_atomic(path, &bytes)
}

/// The [`Preprocessing`] stored by [`save_with_preprocessing`] (empty for a file without).
pub fn load_preprocessing(path: impl AsRef<Path>) -> Result<Preprocessing, WeightsError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.into(), source })?;
    let fmt_err = |message: String| WeightsError::Format { path: path.into(), message };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| fmt_err(format!("{e:?}")))?;
    let empty = std::collections::HashMap::new();
    let m = meta.metadata().as_ref().unwrap_or(&empty);
    let nums = |key: &str| -> Result<Option<Vec<f64>>, WeightsError> {
        match m.get(key) {
            None => Ok(None),
            Some(s) if s.is_empty() => Ok(Some(Vec::new())),
            Some(s) => s
                .split(',')
                .map(|x| x.parse::<f64>().ok().filter(|v| v.is_finite()))
                .collect::<Option<Vec<f64>>>()
                .map(Some)
                .ok_or_else(|| fmt_err(format!("metadata `{key}` is not a list of finite numbers"))),
        }
    };
    let standardizer = match (nums("typenet.standardizer.mean")?, nums("typenet.standardizer.std")?) {
        (Some(mean), Some(std)) if mean.len() == std.len() => Some(crate::data::Standardizer { mean, std }),
        (None, None) => None,
        _ => return Err(fmt_err("the standardiser's mean and std disagree in length".into())),
    };
    let labels = m.get("typenet.labels").map(|s| s.split('\n').map(String::from).collect()).unwrap_or_default();
    Ok(Preprocessing { standardizer, labels })
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    let io = |source| WeightsError::Io { path: path.into(), source };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        std::fs::remove_file(&tmp).ok();
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        io(e)
    })
}

/// Why a tensor's values cannot be used.
enum Bad {
    NonFinite(usize),
    OutOfRange(usize, f64),
    Dtype,
}

/// Decodes a tensor, refusing NaN/infinity and values that do not fit `E`.
fn decode<E: Float>(view: &TensorView<'_>) -> Result<Vec<E>, Bad> {
    let d = view.data();
    let raw: Vec<f64> = match view.dtype() {
        SDtype::F32 => d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        SDtype::F64 => d
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a)
            })
            .collect(),
        _ => return Err(Bad::Dtype),
    };
    let mut out = Vec::with_capacity(raw.len());
    for (i, v) in raw.into_iter().enumerate() {
        if !v.is_finite() {
            return Err(Bad::NonFinite(i));
        }
        match E::from_f64(v) {
            Some(x) if x.is_finite() => out.push(x),
            _ => return Err(Bad::OutOfRange(i, v)),
        }
    }
    Ok(out)
}

struct Assign<E> {
    values: std::collections::HashMap<String, Vec<E>>,
    scalars: std::collections::HashMap<String, f64>,
}

impl<E: Float, D: Device<E>> TensorVisitor<E, D> for Assign<E> {
    type Viewer = (ViewTensorMut, ViewTensorName);
    type Err = D::Err;
    type E2 = E;
    type D2 = D;

    fn visit<S: Shape>(
        &mut self,
        _: TensorOptions<S, E, D>,
        (t, name): (&mut Tensor<S, E, D>, String),
    ) -> Result<Option<Tensor<S, E, D>>, D::Err> {
        // Presence, shape and values were checked before any assignment.
        if let Some(values) = self.values.remove(&name) {
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
        if let Some(x) = self.scalars.get(&name).and_then(|x| N::from(*x)) {
            *n = x;
        }
        Ok(None)
    }
}

/// How [`load_with`] matches a file's keys to the model's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Read only the file's keys under this prefix, with the prefix removed: `"features"`
    /// (or `"features."`) loads a whole model's `features.0.weight` into a sub-network's
    /// `0.weight`. Keys outside the prefix are ignored. Default none.
    pub prefix: Option<String>,
    /// `true` (default for [`load`]): every model tensor must be in the file and every file
    /// key (under the prefix) must be the model's. `false`: tensors the file lacks keep their
    /// values and file keys the model lacks are skipped; both are listed in the
    /// [`LoadReport`]. Shapes and values are checked either way.
    pub strict: bool,
}

impl LoadOptions {
    /// Strict, no prefix (what [`load`] does).
    pub fn strict() -> Self {
        LoadOptions { prefix: None, strict: true }
    }
    /// Not strict, no prefix.
    pub fn non_strict() -> Self {
        LoadOptions { prefix: None, strict: false }
    }
    /// Sets the prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }
}

/// What [`load_with`] did (model keys, without the prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model tensors assigned from the file.
    pub loaded: Vec<String>,
    /// Model tensors the file lacks (kept their values; non-strict loads only).
    pub missing: Vec<String>,
    /// File keys (under the prefix, prefix included) that the model lacks and that were
    /// skipped: PyTorch's `num_batches_tracked` always, any other key in non-strict loads.
    pub skipped: Vec<String>,
}

/// Loads weights saved by [`save`] (or by PyTorch: `safetensors.torch.save_file(model.state_dict())`)
/// into `model`, strictly: [`load_with`] with [`LoadOptions::strict`].
///
/// Every tensor the model has must be in the file with the same shape
/// ([`WeightsError::Missing`], [`WeightsError::ShapeMismatch`]), and the file may hold
/// nothing the model lacks ([`WeightsError::Unexpected`]) except PyTorch's batch-norm
/// counters `*.num_batches_tracked`, which are skipped. `F32` and `F64` files load into
/// models of either type; NaN or infinite values, and values beyond the model's type's range,
/// are errors naming the tensor. Scalar settings (e.g. batch norm's momentum) that are absent
/// from the file keep their current values. On error the model is unchanged. Never panics.
pub fn load<M, E, D>(model: &mut M, path: impl AsRef<Path>) -> Result<(), WeightsError>
where
    M: TensorCollection<E, D>,
    E: Float + SafeDtype,
    D: Device<E>,
{
    load_with(model, path, &LoadOptions::strict()).map(|_| ())
}

/// Loads weights into `model` as `opts` says (a key prefix, strict or not) and reports what
/// was loaded, missing and skipped. Errors name the file's key. On error the model is
/// unchanged.
pub fn load_with<M, E, D>(model: &mut M, path: impl AsRef<Path>, opts: &LoadOptions) -> Result<LoadReport, WeightsError>
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
    let prefix = match opts.prefix.as_deref() {
        None | Some("") => String::new(),
        Some(p) if p.ends_with('.') => p.to_string(),
        Some(p) => format!("{p}."),
    };
    let mut report = LoadReport::default();
    let mut values = std::collections::HashMap::new();
    let mut scalars = std::collections::HashMap::new();

    for e in &expected {
        let key = format!("{prefix}{}", e.name);
        match file.tensor(&key) {
            Err(_) if e.scalar => {}
            Err(_) if !opts.strict => report.missing.push(e.name.clone()),
            Err(_) => return Err(WeightsError::Missing { path: path.into(), name: key, expected: e.shape.clone() }),
            Ok(v) => {
                let found: Vec<usize> = v.shape().to_vec();
                let ok = if e.scalar { found.iter().product::<usize>() == 1usize } else { found == e.shape };
                if !matches!(v.dtype(), SDtype::F32 | SDtype::F64) {
                    return Err(WeightsError::Dtype { path: path.into(), name: key, found: format!("{:?}", v.dtype()) });
                }
                if !ok {
                    return Err(WeightsError::ShapeMismatch { path: path.into(), name: key, expected: e.shape.clone(), found });
                }
                if e.scalar {
                    if let Ok(x) = decode::<f64>(&v) {
                        scalars.insert(e.name.clone(), x[0]);
                    }
                    continue;
                }
                match decode::<E>(&v) {
                    Ok(x) => {
                        values.insert(e.name.clone(), x);
                        report.loaded.push(e.name.clone());
                    }
                    Err(Bad::NonFinite(index)) => return Err(WeightsError::NonFinite { path: path.into(), name: key, index }),
                    Err(Bad::OutOfRange(index, value)) => {
                        return Err(WeightsError::OutOfRange { path: path.into(), name: key, index, value })
                    }
                    Err(Bad::Dtype) => {
                        return Err(WeightsError::Dtype { path: path.into(), name: key, found: format!("{:?}", v.dtype()) })
                    }
                }
            }
        }
    }
    let mut names: Vec<&String> = file.names();
    names.sort();
    for name in names {
        let Some(rest) = name.strip_prefix(prefix.as_str()) else { continue };
        if expected.iter().any(|e| e.name == rest) {
            continue;
        }
        if opts.strict && !rest.ends_with("num_batches_tracked") {
            let shape = file.tensor(name).map(|v| v.shape().to_vec()).unwrap_or_default();
            return Err(WeightsError::Unexpected { path: path.into(), name: name.clone(), shape });
        }
        report.skipped.push(name.clone());
    }

    M::iter_tensors(&mut RecursiveWalker { m: (model, String::new()), f: &mut Assign { values, scalars } })
        .map_err(|e| WeightsError::Format { path: path.into(), message: format!("device error: {e:?}") })?;
    Ok(report)
}

/// `model.save_safetensors(path)` / `model.load_safetensors(path)` for any model: typenet's
/// checked [`save`] and [`load`] as methods (in the prelude, in place of dfdx's loader, which
/// panics on a dtype mismatch and leaves a model half-loaded on a missing tensor).
pub trait Weights<E: Dtype, D: Storage<E>> {
    /// [`save`].
    fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), WeightsError>;
    /// [`load`].
    fn load_safetensors(&mut self, path: impl AsRef<Path>) -> Result<(), WeightsError>;
}

impl<M: TensorCollection<E, D>, E: Float + SafeDtype, D: Device<E>> Weights<E, D> for M {
    fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), WeightsError> {
        save(self, path)
    }
    fn load_safetensors(&mut self, path: impl AsRef<Path>) -> Result<(), WeightsError> {
        load(self, path)
    }
}
