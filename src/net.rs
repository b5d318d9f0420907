//! The trait every generated network implements.

use dfdx::shapes::Shape;

/// Implemented by every network declared with [`network!`](crate::network).
///
/// `Input` and `Output` are the per-sample shapes (the batch axis is never part of them;
/// run-time axes such as a sequence length are `usize`).
pub trait Network {
    /// Per-sample input shape, e.g. `(Const<1>, Const<28>, Const<28>)`.
    type Input: Shape;
    /// Per-sample output shape, e.g. `(Const<10>,)`.
    type Output: Shape;
    /// Number of trainable parameters (equal to dfdx's `num_trainable_params()`).
    const NUM_PARAMS: usize;
    /// One row per layer, in order (nested blocks included, indented).
    fn layers() -> Vec<LayerRow>;
    /// Multiply–accumulates of one sample's forward pass: the sum of [`LayerRow::macs`].
    fn macs() -> Count {
        Self::layers().iter().fold(Count::default(), |acc, r| acc.add(&r.macs))
    }
    /// Elements of every layer's output for one sample: the sum of
    /// [`LayerRow::activations`] (times 4 bytes in `f32`).
    fn activations() -> Count {
        Self::layers().iter().fold(Count::default(), |acc, r| acc.add(&r.activations))
    }
    /// A table like Keras' `model.summary()` and torchinfo's: name, layer, output shape,
    /// parameters, multiply–accumulates and output elements per layer, with totals and the
    /// estimated size in `f32` (parameters + one sample's activations).
    fn summary() -> String {
        crate::net::format_summary(std::any::type_name::<Self>(), &Self::layers())
    }
}

/// A row of [`Network::summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRow {
    /// Field / weight-key name (`dense_1`) or generated name for stateless layers (`relu_1`).
    pub name: String,
    /// The layer as written in the declaration (`dense(400 -> 120)`).
    pub layer: String,
    /// Per-sample output shape (`[16, 5, 5]`).
    pub output: String,
    /// Trainable parameters of this layer.
    pub params: usize,
    /// Nesting depth (0 at top level; 1 inside `each { .. }` …).
    pub depth: usize,
    /// Multiply–accumulates of this layer in one sample's forward pass (torchinfo's
    /// "Mult-Adds": products of a weight with an input; nested layers count their own). A
    /// polynomial in the run-time axes when the work grows with them (`1,024·t`).
    pub macs: Count,
    /// Elements of this layer's per-sample output (its activation memory, in values).
    pub activations: Count,
}

/// A count of one sample's work or memory (MACs, elements, bytes), computed at compile time
/// from the declared shapes: a number, or a polynomial in the declaration's run-time axes
/// (`4,096·t + 64·t²` for self-attention over `[t, 32]`), or unknown ("—": it depends on
/// what no declared shape states, such as which branch of `route` each row takes, or it
/// overflows `usize`). Never a guess: an unknown part makes the whole count unknown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Count {
    /// `(coefficient, axes)`, the axes sorted and repeated for powers (`["t", "t"]` is t²);
    /// like terms combined, no zero coefficient, by degree. Empty for 0 (and when unknown).
    terms: Vec<(usize, Vec<String>)>,
    unknown: bool,
}

impl Count {
    /// A count from its terms `(coefficient, axes)`; a `None` coefficient (an overflow at
    /// compile time) makes it unknown.
    pub fn new(terms: &[(Option<usize>, &[&str])]) -> Count {
        let mut c = Count::default();
        for (k, axes) in terms {
            match k {
                Some(k) => c.terms.push((*k, axes.iter().map(|a| a.to_string()).collect())),
                None => return Count::unknown(),
            }
        }
        c.tidy()
    }

    /// A number.
    pub fn of(n: usize) -> Count {
        Count { terms: vec![(n, Vec::new())], unknown: false }.tidy()
    }

    /// `n` per unit of the product of `axes` (`Count::per(1_024, &["t"])` is `1,024·t`).
    pub fn per(n: usize, axes: &[&str]) -> Count {
        Count { terms: vec![(n, axes.iter().map(|a| a.to_string()).collect())], unknown: false }.tidy()
    }

    /// Not known before run time (or too large for `usize`).
    pub fn unknown() -> Count {
        Count { terms: Vec::new(), unknown: true }
    }

    /// Whether the count is known (a number or a polynomial).
    pub fn is_known(&self) -> bool {
        !self.unknown
    }

    /// The number, when it depends on no run-time axis and is known.
    pub fn value(&self) -> Option<usize> {
        match (self.unknown, self.terms.as_slice()) {
            (true, _) => None,
            (false, []) => Some(0),
            (false, [(k, axes)]) if axes.is_empty() => Some(*k),
            _ => None,
        }
    }

    /// The terms `(coefficient, axes)` (see the type's documentation); empty when unknown.
    pub fn terms(&self) -> &[(usize, Vec<String>)] {
        &self.terms
    }

    /// The value with every run-time axis given (`&[("t", 10)]`); `None` when unknown, an
    /// axis is missing or it overflows.
    pub fn at(&self, axes: &[(&str, usize)]) -> Option<usize> {
        if self.unknown {
            return None;
        }
        let mut sum: usize = 0;
        for (k, names) in &self.terms {
            let mut term = *k;
            for n in names {
                let v = axes.iter().find(|(a, _)| a == n)?.1;
                term = term.checked_mul(v)?;
            }
            sum = sum.checked_add(term)?;
        }
        Some(sum)
    }

    /// The sum of two counts.
    pub fn add(&self, other: &Count) -> Count {
        let mut terms = self.terms.clone();
        terms.extend(other.terms.iter().cloned());
        Count { terms, unknown: self.unknown || other.unknown }.tidy()
    }

    /// The product of two counts (a block run `n` times).
    pub fn mul(&self, other: &Count) -> Count {
        let mut terms = Vec::new();
        for (a, x) in &self.terms {
            for (b, y) in &other.terms {
                let Some(k) = a.checked_mul(*b) else { return Count::unknown() };
                let mut axes = x.clone();
                axes.extend(y.iter().cloned());
                terms.push((k, axes));
            }
        }
        Count { terms, unknown: self.unknown || other.unknown }.tidy()
    }

    /// The same count with run-time axes renamed (`(from, to)` pairs, applied at once).
    pub fn renamed(&self, names: &[(&str, &str)]) -> Count {
        let terms = self
            .terms
            .iter()
            .map(|(k, axes)| (*k, axes.iter().map(|a| names.iter().find(|(f, _)| f == a).map_or_else(|| a.clone(), |(_, t)| t.to_string())).collect()))
            .collect();
        Count { terms, unknown: self.unknown }.tidy()
    }

    fn tidy(mut self) -> Count {
        let mut out: Vec<(usize, Vec<String>)> = Vec::new();
        for (k, mut axes) in self.terms.drain(..) {
            axes.sort();
            match out.iter_mut().find(|(_, a)| *a == axes) {
                Some((acc, _)) => match acc.checked_add(k) {
                    Some(v) => *acc = v,
                    None => return Count::unknown(),
                },
                None => out.push((k, axes)),
            }
        }
        out.retain(|(k, _)| *k != 0);
        out.sort_by(|a, b| (a.1.len(), &a.1).cmp(&(b.1.len(), &b.1)));
        if self.unknown {
            out.clear();
        }
        Count { terms: out, unknown: self.unknown }
    }
}

/// `416,520`, `1,024·t + 64·t²`, `0`, or `—` when unknown.
impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unknown {
            return f.write_str("—");
        }
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|(k, axes)| {
                let mono = monomial(axes);
                match (*k, mono.is_empty()) {
                    (k, true) => group_thousands(k),
                    (1, false) => mono,
                    (k, false) => format!("{}·{mono}", group_thousands(k)),
                }
            })
            .collect();
        f.write_str(&parts.join(" + "))
    }
}

/// `["n", "t", "t"]` → `n·t²`.
fn monomial(axes: &[String]) -> String {
    let mut out = String::new();
    typenet_shapes::text::write_monomial(&mut out, axes).expect("writing to a String");
    out
}

/// Bytes of one `f32` value: the summary's memory estimate is for `f32`.
pub const F32_BYTES: usize = 4;

#[doc(hidden)]
pub fn format_summary(type_name: &str, rows: &[LayerRow]) -> String {
    let short = type_name
        .split('<')
        .next()
        .unwrap_or(type_name)
        .rsplit("::")
        .next()
        .unwrap_or(type_name);
    const N: usize = 6;
    let heads = ["Layer (name)", "Kind", "Output shape", "Param #", "MACs", "Output elems"];
    let cells: Vec<[String; N]> = rows
        .iter()
        .map(|r| {
            [
                format!("{}{}", "  ".repeat(r.depth), r.name),
                r.layer.clone(),
                r.output.clone(),
                group_thousands(r.params),
                r.macs.to_string(),
                r.activations.to_string(),
            ]
        })
        .collect();
    let mut w = heads.map(|h| h.chars().count());
    for c in &cells {
        for i in 0..N {
            w[i] = w[i].max(c[i].chars().count());
        }
    }
    let total: usize = rows.iter().map(|r| r.params).sum();
    let macs = rows.iter().fold(Count::default(), |acc, r| acc.add(&r.macs));
    let acts = rows.iter().fold(Count::default(), |acc, r| acc.add(&r.activations));
    let width = w.iter().sum::<usize>() + 2 * (N - 1);
    let line = |ch: char| ch.to_string().repeat(width);
    let mut s = format!("Network: {short}\n{}\n", line('='));
    let row = |c: &[String; N]| {
        let mut out = String::new();
        for i in 0..N {
            let pad = " ".repeat(w[i] - c[i].chars().count());
            // Text columns left-aligned, counts right-aligned.
            if i < 3 {
                out += &format!("{}{pad}", c[i]);
            } else {
                out += &format!("{pad}{}", c[i]);
            }
            if i + 1 < N {
                out += "  ";
            }
        }
        out.trim_end().to_string() + "\n"
    };
    s += &row(&heads.map(String::from));
    s += &format!("{}\n", line('-'));
    for c in &cells {
        s += &row(c);
    }
    s += &format!("{}\nTotal params: {}\n", line('='), group_thousands(total));
    s += &format!("Total MACs (one sample): {macs}\n");
    s += &format!("Output elements (one sample): {acts}\n");
    let four = Count::of(F32_BYTES);
    let (pb, ab) = (Count::of(total).mul(&four), acts.mul(&four));
    let all = pb.add(&ab);
    let human = all.value().map(|b| format!(" ({})", human_bytes(b))).unwrap_or_default();
    s += &format!("Estimated total size (f32): {all} bytes{human} = params {pb} + activations {ab}\n");
    s
}

/// `306,832` bytes → `299.6 KiB`.
fn human_bytes(b: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

fn group_thousands(n: usize) -> String {
    let mut out = String::new();
    typenet_shapes::text::write_thousands(&mut out, n).expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn counts_add_multiply_and_read() {
        let t = Count::new(&[(Some(1024), &["t"]), (Some(64), &["t", "t"]), (Some(10), &[])]);
        assert_eq!(t.to_string(), "10 + 1,024·t + 64·t²");
        assert_eq!(t.at(&[("t", 2)]), Some(10 + 2048 + 256));
        assert_eq!(t.value(), None);
        let n = Count::new(&[(Some(3), &["n"])]);
        assert_eq!(t.mul(&n).to_string(), "30·n + 3,072·n·t + 192·n·t²");
        assert_eq!(Count::of(5).add(&Count::of(7)).value(), Some(12));
        assert_eq!(Count::of(0).to_string(), "0");
        assert_eq!(Count::of(usize::MAX).add(&Count::of(1)).to_string(), "—");
        assert_eq!(Count::new(&[(None, &[])]).to_string(), "—");
        assert_eq!(Count::unknown().add(&Count::of(3)).value(), None);
        assert_eq!(t.renamed(&[("t", "s")]).to_string(), "10 + 1,024·s + 64·s²");
        assert_eq!(human_bytes(306_832), "299.6 KiB");
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(61706), "61,706");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000000), "1,000,000");
    }
}
