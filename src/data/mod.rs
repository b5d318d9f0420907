//! Datasets: an in-memory [`Dataset`] (flat rows + per-sample shape, class labels and/or
//! regression targets), seeded splits, standardisation, one-hot encoding, loaders for CSV
//! ([`load_csv`], gzip supported) and MNIST's IDX format ([`load_mnist`]), and the UCI
//! handwritten digits shipped with the crate ([`digits`]).
//!
//! Every loader returns a [`DataError`] naming the file and the line (CSV) or byte offset (IDX)
//! for malformed input; nothing panics on bad files.

mod csv;
mod error;
mod idx;

pub use self::csv::{load_csv, parse_csv, Column, CsvOptions, LabelKind};
pub use error::DataError;
pub use idx::{load_idx_images, load_idx_labels, load_mnist, IdxImages};

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use crate::Float;

/// An in-memory dataset: `len()` samples, each a row of `feature_len()` values laid out
/// row-major in `inputs` with the per-sample shape `sample_shape` (e.g. `[64]` or
/// `[1, 28, 28]`), plus class labels (indices `0..num_classes`) and/or regression targets
/// (`target_len` values per sample).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset<E = f32> {
    /// Row-major inputs, `len() * feature_len()` values.
    pub inputs: Vec<E>,
    /// Per-sample shape; its product is `feature_len()`.
    pub sample_shape: Vec<usize>,
    /// Class index of each sample, if the dataset is labelled.
    pub labels: Option<Vec<usize>>,
    /// Regression (or soft) targets, `target_len` per sample.
    pub targets: Option<Vec<E>>,
    /// Number of target values per sample (0 when `targets` is `None`).
    pub target_len: usize,
}

/// Builds the one-hot encoding of `labels` over `num_classes` classes (row-major,
/// `labels.len() * num_classes` values). A label `>= num_classes` is an error.
pub fn one_hot<E: Float>(labels: &[usize], num_classes: usize) -> Result<Vec<E>, DataError> {
    let mut out = vec![E::zero(); labels.len() * num_classes];
    for (i, &l) in labels.iter().enumerate() {
        if l >= num_classes {
            return Err(DataError::Invalid(format!(
                "label {l} of sample {i} is out of range for {num_classes} classes"
            )));
        }
        out[i * num_classes + l] = E::one();
    }
    Ok(out)
}

impl<E: Float> Dataset<E> {
    /// A dataset of unlabelled samples of shape `sample_shape`. Errors if `inputs.len()` is
    /// not a multiple of the sample size.
    pub fn new(inputs: Vec<E>, sample_shape: &[usize]) -> Result<Self, DataError> {
        let f: usize = sample_shape.iter().product();
        if f == 0 || !inputs.len().is_multiple_of(f) {
            return Err(DataError::Invalid(format!(
                "{} input values do not divide into samples of shape {sample_shape:?}",
                inputs.len()
            )));
        }
        Ok(Dataset {
            inputs,
            sample_shape: sample_shape.to_vec(),
            labels: None,
            targets: None,
            target_len: 0,
        })
    }

    /// Attaches class labels (one per sample).
    pub fn with_labels(mut self, labels: Vec<usize>) -> Result<Self, DataError> {
        if labels.len() != self.len() {
            return Err(DataError::Invalid(format!(
                "{} labels for {} samples",
                labels.len(),
                self.len()
            )));
        }
        self.labels = Some(labels);
        Ok(self)
    }

    /// Attaches regression targets, `target_len` values per sample.
    pub fn with_targets(mut self, targets: Vec<E>, target_len: usize) -> Result<Self, DataError> {
        if target_len == 0 || targets.len() != self.len() * target_len {
            return Err(DataError::Invalid(format!(
                "{} target values for {} samples of {target_len} targets each",
                targets.len(),
                self.len()
            )));
        }
        self.targets = Some(targets);
        self.target_len = target_len;
        Ok(self)
    }

    /// Sets `targets` to the one-hot encoding of `labels` over `num_classes` classes.
    pub fn with_one_hot_targets(self, num_classes: usize) -> Result<Self, DataError> {
        let labels = self
            .labels
            .as_ref()
            .ok_or_else(|| DataError::Invalid("one-hot encoding needs labels".into()))?;
        let t = one_hot(labels, num_classes)?;
        self.with_targets(t, num_classes)
    }

    /// The same samples viewed with another per-sample shape of the same size (e.g. the
    /// digits' `[64]` as `[1, 8, 8]`).
    pub fn reshape(mut self, sample_shape: &[usize]) -> Result<Self, DataError> {
        let f: usize = sample_shape.iter().product();
        if f != self.feature_len() {
            return Err(DataError::Invalid(format!(
                "cannot view samples of shape {:?} as {sample_shape:?}",
                self.sample_shape
            )));
        }
        self.sample_shape = sample_shape.to_vec();
        Ok(self)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs.len() / self.feature_len().max(1)
    }

    /// `true` when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per sample (product of `sample_shape`).
    pub fn feature_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// The inputs of sample `i`.
    pub fn input(&self, i: usize) -> &[E] {
        let f = self.feature_len();
        &self.inputs[i * f..(i + 1) * f]
    }

    /// The targets of sample `i`, if any.
    pub fn target(&self, i: usize) -> Option<&[E]> {
        let t = self.target_len;
        self.targets.as_ref().map(|v| &v[i * t..(i + 1) * t])
    }

    /// Number of classes: one more than the largest label (`None` when unlabelled).
    pub fn num_classes(&self) -> Option<usize> {
        self.labels.as_ref().map(|l| l.iter().max().map_or(0, |m| m + 1))
    }

    /// A new dataset holding the samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset<E> {
        let f = self.feature_len();
        let mut inputs = Vec::with_capacity(indices.len() * f);
        for &i in indices {
            inputs.extend_from_slice(self.input(i));
        }
        let labels = self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect());
        let targets = self.targets.as_ref().map(|_| {
            let mut t = Vec::with_capacity(indices.len() * self.target_len);
            for &i in indices {
                t.extend_from_slice(self.target(i).unwrap_or(&[]));
            }
            t
        });
        Dataset {
            inputs,
            sample_shape: self.sample_shape.clone(),
            labels,
            targets,
            target_len: self.target_len,
        }
    }

    /// Splits off a seeded random `fraction` of the samples: returns `(rest, part)` with
    /// `part` holding `round(fraction · len)` samples. The same seed gives the same split.
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset<E>, Dataset<E>) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        let k = ((fraction.clamp(0.0, 1.0) * self.len() as f64).round() as usize).min(self.len());
        let (part, rest) = idx.split_at(k);
        (self.subset(rest), self.subset(part))
    }

    /// Seeded train / validation / test split with the given validation and test fractions
    /// (e.g. `0.15, 0.15`).
    pub fn train_val_test_split(
        &self,
        val_fraction: f64,
        test_fraction: f64,
        seed: u64,
    ) -> (Dataset<E>, Dataset<E>, Dataset<E>) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        let n = self.len() as f64;
        let nt = ((test_fraction.clamp(0.0, 1.0) * n).round() as usize).min(self.len());
        let nv = ((val_fraction.clamp(0.0, 1.0) * n).round() as usize).min(self.len() - nt);
        let test = &idx[..nt];
        let val = &idx[nt..nt + nv];
        let train = &idx[nt + nv..];
        (self.subset(train), self.subset(val), self.subset(test))
    }

    /// The same dataset with inputs and targets converted to another float type.
    pub fn cast<E2: Float>(&self) -> Dataset<E2> {
        let c = |v: &E| E2::from_f64(v.to_f64().unwrap_or(f64::NAN)).unwrap_or_else(E2::nan);
        Dataset {
            inputs: self.inputs.iter().map(c).collect(),
            sample_shape: self.sample_shape.clone(),
            labels: self.labels.clone(),
            targets: self.targets.as_ref().map(|t| t.iter().map(c).collect()),
            target_len: self.target_len,
        }
    }

    /// Multiplies every input by `s` (e.g. `1.0 / 16.0` for the digits).
    pub fn scale(mut self, s: f64) -> Self {
        let s = E::from_f64(s).unwrap_or_else(E::one);
        self.inputs.iter_mut().for_each(|v| *v *= s);
        self
    }
}

/// Per-feature standardisation `(x − mean) / std`, fitted on one split (the training data)
/// and applied to every split, so no statistics leak from validation or test data.
/// Features with zero variance get `std = 1` (they become 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer<E = f32> {
    /// Per-feature mean.
    pub mean: Vec<E>,
    /// Per-feature (population) standard deviation, 1 where it was 0.
    pub std: Vec<E>,
}

impl<E: Float> Standardizer<E> {
    /// Mean and standard deviation of every feature of `ds`. A NaN or infinite cell is an
    /// error naming its sample and feature (it would spread to the whole column).
    pub fn fit(ds: &Dataset<E>) -> Result<Self, DataError> {
        let f = ds.feature_len();
        if let Some(i) = ds.inputs.iter().position(|v| !v.is_finite()) {
            return Err(DataError::Invalid(format!(
                "cannot fit a standardiser: sample {} has {} in feature {} (remove or impute non-finite cells first)",
                i / f.max(1),
                ds.inputs[i].to_f64().unwrap_or(f64::NAN),
                i % f.max(1)
            )));
        }
        let n = ds.len().max(1) as f64;
        let mut mean = vec![0f64; f];
        let mut sq = vec![0f64; f];
        for i in 0..ds.len() {
            for (j, v) in ds.input(i).iter().enumerate() {
                let v = v.to_f64().unwrap_or(0.0);
                mean[j] += v;
                sq[j] += v * v;
            }
        }
        let mut m = Vec::with_capacity(f);
        let mut s = Vec::with_capacity(f);
        for j in 0..f {
            let mu = mean[j] / n;
            let var = (sq[j] / n - mu * mu).max(0.0);
            let sd = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
            m.push(E::from_f64(mu).unwrap_or_else(E::zero));
            s.push(E::from_f64(sd).unwrap_or_else(E::one));
        }
        Ok(Standardizer { mean: m, std: s })
    }

    /// The same statistics in another element type (e.g. `f64` for
    /// [`Preprocessing`](crate::train::Preprocessing), and back).
    pub fn cast<E2: Float>(&self) -> Standardizer<E2> {
        let c = |v: &Vec<E>| v.iter().map(|x| E2::from_f64(x.to_f64().unwrap_or(f64::NAN)).unwrap_or_else(E2::nan)).collect();
        Standardizer { mean: c(&self.mean), std: c(&self.std) }
    }

    /// Standardises `ds` in place. Errors if its feature count differs from the fitted one.
    pub fn apply(&self, ds: &mut Dataset<E>) -> Result<(), DataError> {
        let f = ds.feature_len();
        if f != self.mean.len() {
            return Err(DataError::Invalid(format!(
                "standardiser fitted on {} features applied to {f}",
                self.mean.len()
            )));
        }
        for row in ds.inputs.chunks_mut(f) {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - self.mean[j]) / self.std[j];
            }
        }
        Ok(())
    }
}

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// The UCI "Optical Recognition of Handwritten Digits" data (Alpaydin & Kaynak 1998,
/// CC BY 4.0; the 1797-sample version bundled with scikit-learn), shipped inside the crate:
/// 1797 samples of 64 features (8×8 pixel counts, `0..=16`, unscaled) with labels `0..=9`.
///
/// ```
/// let ds = typenet::data::digits();
/// assert_eq!((ds.len(), ds.feature_len(), ds.num_classes()), (1797, 64, Some(10)));
/// ```
pub fn digits() -> Dataset<f32> {
    let opts = CsvOptions { label: LabelKind::Class(Column::Last), ..CsvOptions::default() };
    parse_csv(DIGITS_CSV_GZ, "data/digits.csv.gz (embedded)", &opts)
        .expect("the embedded digits data is well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_loads() {
        let ds = digits();
        assert_eq!(ds.len(), 1797);
        assert_eq!(ds.sample_shape, vec![64]);
        assert_eq!(ds.num_classes(), Some(10));
        assert!(ds.inputs.iter().all(|v| (0.0..=16.0).contains(v)));
        assert_eq!(ds.labels.as_ref().unwrap()[..3], [0, 1, 2]);
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let ds = Dataset::new((0..100).map(|v| v as f32).collect(), &[1]).unwrap();
        let ds = ds.with_labels((0..100).collect()).unwrap();
        let (a, b, c) = ds.train_val_test_split(0.2, 0.1, 7);
        assert_eq!((a.len(), b.len(), c.len()), (70, 20, 10));
        let (a2, ..) = ds.train_val_test_split(0.2, 0.1, 7);
        assert_eq!(a, a2);
        let mut all: Vec<usize> = [a, b, c].iter().flat_map(|d| d.labels.clone().unwrap()).collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn standardise_from_train_only() {
        let train = Dataset::new(vec![1.0f64, 10.0, 3.0, 10.0], &[2]).unwrap();
        let mut test = Dataset::new(vec![2.0f64, 11.0], &[2]).unwrap();
        let s = Standardizer::fit(&train).unwrap();
        assert_eq!(s.mean, vec![2.0, 10.0]);
        assert_eq!(s.std, vec![1.0, 1.0]);
        s.apply(&mut test).unwrap();
        assert_eq!(test.inputs, vec![0.0, 1.0]);
    }

    #[test]
    fn one_hot_encodes() {
        assert_eq!(one_hot::<f32>(&[2, 0], 3).unwrap(), vec![0., 0., 1., 1., 0., 0.]);
        assert!(one_hot::<f32>(&[3], 3).is_err());
    }
}
