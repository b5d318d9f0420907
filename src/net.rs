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
    /// A table like Keras' `model.summary()`: name, layer, output shape, parameters, total.
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
}

#[doc(hidden)]
pub fn format_summary(type_name: &str, rows: &[LayerRow]) -> String {
    let short = type_name
        .split('<')
        .next()
        .unwrap_or(type_name)
        .rsplit("::")
        .next()
        .unwrap_or(type_name);
    let heads = ["Layer (name)", "Kind", "Output shape", "Param #"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                format!("{}{}", "  ".repeat(r.depth), r.name),
                r.layer.clone(),
                r.output.clone(),
                group_thousands(r.params),
            ]
        })
        .collect();
    let mut w = heads.map(|h| h.chars().count());
    for c in &cells {
        for i in 0..4 {
            w[i] = w[i].max(c[i].chars().count());
        }
    }
    let total: usize = rows.iter().map(|r| r.params).sum();
    let width = w.iter().sum::<usize>() + 6;
    let line = |ch: char| ch.to_string().repeat(width);
    let mut s = format!("Network: {short}\n{}\n", line('='));
    let row = |c: &[String; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}\n",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
    };
    s += &row(&heads.map(String::from));
    s += &format!("{}\n", line('-'));
    for c in &cells {
        s += &row(c);
    }
    s += &format!("{}\nTotal params: {}\n", line('='), group_thousands(total));
    s
}

fn group_thousands(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn thousands() {
        assert_eq!(group_thousands(61706), "61,706");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000000), "1,000,000");
    }
}
