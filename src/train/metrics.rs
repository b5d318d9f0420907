//! Evaluation metrics: accuracy and the confusion matrix.

use std::fmt;

/// Fraction of positions where `predicted` equals `actual` (0 for empty input; the shorter
/// length is used if they differ).
pub fn accuracy(actual: &[usize], predicted: &[usize]) -> f64 {
    let n = actual.len().min(predicted.len());
    if n == 0 {
        return 0.0;
    }
    actual.iter().zip(predicted).filter(|(a, p)| a == p).count() as f64 / n as f64
}

/// Index of the largest value of each row of `k` values (first one on ties; NaN never wins).
pub fn argmax_rows<E: PartialOrd + Copy>(values: &[E], k: usize) -> Vec<usize> {
    values
        .chunks(k.max(1))
        .map(|row| {
            let mut best = 0;
            for (i, v) in row.iter().enumerate() {
                let is_nan = |x: &E| x.partial_cmp(x).is_none();
                if *v > row[best] || (is_nan(&row[best]) && !is_nan(v)) {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// A confusion matrix: `counts[actual][predicted]`. Its `Display` is a table with the true
/// classes as rows and the predictions as columns, followed by the per-class recall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// `counts[actual][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Counts the pairs `(actual[i], predicted[i])` over `num_classes` classes (pairs with a
    /// class `>= num_classes` are ignored).
    pub fn new(num_classes: usize, actual: &[usize], predicted: &[usize]) -> Self {
        let mut counts = vec![vec![0; num_classes]; num_classes];
        for (&a, &p) in actual.iter().zip(predicted) {
            if a < num_classes && p < num_classes {
                counts[a][p] += 1;
            }
        }
        ConfusionMatrix { counts }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// Number of samples counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Fraction on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let t = self.total();
        if t == 0 {
            return 0.0;
        }
        (0..self.num_classes()).map(|i| self.counts[i][i]).sum::<usize>() as f64 / t as f64
    }

    /// Recall of class `c`: correct predictions of `c` over samples of class `c`.
    pub fn recall(&self, c: usize) -> f64 {
        let n: usize = self.counts[c].iter().sum();
        if n == 0 { 0.0 } else { self.counts[c][c] as f64 / n as f64 }
    }

    /// Precision of class `c`: correct predictions of `c` over all predictions of `c`.
    pub fn precision(&self, c: usize) -> f64 {
        let n: usize = self.counts.iter().map(|r| r[c]).sum();
        if n == 0 { 0.0 } else { self.counts[c][c] as f64 / n as f64 }
    }
}

impl fmt::Display for ConfusionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.num_classes();
        let w = self
            .counts
            .iter()
            .flatten()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1)
            .max(k.saturating_sub(1).to_string().len())
            .max(3);
        writeln!(f, "true \\ predicted")?;
        write!(f, "{:>5} |", "")?;
        for p in 0..k {
            write!(f, " {p:>w$}")?;
        }
        writeln!(f, " | recall")?;
        writeln!(f, "{}", "-".repeat(7 + k * (w + 1) + 9))?;
        for a in 0..k {
            write!(f, "{a:>5} |")?;
            for p in 0..k {
                write!(f, " {:>w$}", self.counts[a][p])?;
            }
            writeln!(f, " | {:.3}", self.recall(a))?;
        }
        write!(f, "accuracy {:.4} ({} samples)", self.accuracy(), self.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion() {
        let m = ConfusionMatrix::new(3, &[0, 0, 1, 2, 2], &[0, 1, 1, 2, 0]);
        assert_eq!(m.counts, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 1]]);
        assert_eq!(m.accuracy(), 0.6);
        assert_eq!(m.recall(0), 0.5);
        assert_eq!(m.precision(0), 0.5);
        let s = m.to_string();
        assert!(s.contains("accuracy 0.6000 (5 samples)"), "{s}");
        assert_eq!(accuracy(&[0, 1, 2], &[0, 1, 1]), 2.0 / 3.0);
        assert_eq!(argmax_rows(&[0.1f32, 0.9, 0.5, 0.2], 2), vec![1, 0]);
        assert_eq!(argmax_rows(&[f32::NAN, 0.1], 2), vec![1]);
    }
}
