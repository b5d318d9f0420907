//! Graph aggregation ops: gather rows along edges, scatter (sum, mean, max) by target, and the
//! sparse–dense product with a weighted adjacency, each with its own backward pass.
//!
//! Tensors are `[rows, f]` (`(usize, F)`, any `F: Dim`): node features have one row per node
//! of the [`Graph`], messages one row per edge (in edge order).
//!
//! - [`GraphKernel`], a supertrait of [`Backend`](crate::Backend): `Cpu` (f32, f64) has
//!   kernels that run rayon over target (or source) nodes and never need atomics: the graph
//!   keeps its edges in CSR form both by target (forward) and by source (backward).
//! - [`gather_composed`], [`weighted_sum_composed`], [`max_composed`]: the same ops composed
//!   of dfdx ops (`gather`, dense matmul with the `[n, rows]` weight matrix, masked `max`),
//!   for any other dfdx device, which implements [`GraphKernel`] by calling them.
//! - The checked entry points ([`gather_source`], [`scatter`], [`aggregate`], [`propagate`],
//!   ...) validate the row count against the graph (`Err(GraphError::NodeCount)`, never a
//!   panic) and are what the layers use.
//!
//! Empty aggregations (a node without incoming edges) give 0 for sum, mean and max, as PyTorch
//! Geometric does. The `Cpu` max kernel sends each output element's gradient to the first of
//! equal maxima in edge order; the composed path, like dfdx's `max`, to every tied maximum.

mod cpu;

use dfdx::prelude::*;

use crate::graph::{device_err, Graph, GraphError, Propagation};
use crate::Float;

/// How messages arriving at a node are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Aggr {
    /// The sum over incoming edges.
    #[default]
    Sum,
    /// The mean over incoming edges (0 without any).
    Mean,
    /// The element-wise maximum over incoming edges (0 without any).
    Max,
}

/// Which end of each edge a gather reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// `x[source]` (`x_j` in PyTorch Geometric's notation).
    Source,
    /// `x[target]` (`x_i`).
    Target,
}

/// What the rows of an aggregated tensor are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rows {
    /// One row per node; edge `j → i` reads row `j` (neighbour aggregation).
    Nodes,
    /// One row per edge (messages); edge `e` reads row `e`.
    Edges,
}

/// `[rows, f]` tensors.
pub type Rows2<F, E, D, T> = Tensor<(usize, F), E, D, T>;

/// Devices that can run the graph ops (see the module docs). Callers go through the checked
/// functions of this module; the kernels may assume the row counts fit the graph.
pub trait GraphKernel<E: Dtype>: Device<E> {
    /// `out[e] = x[end(e)]`, `[num_edges, f]`.
    fn try_gather<F: Dim, T: Tape<E, Self>>(x: Rows2<F, E, Self, T>, g: &Graph, end: End) -> Result<Rows2<F, E, Self, T>, Self::Err>;

    /// `out[i] = s[i]·x[i] + Σ_{e: → i} w[e]·x[row(e)]` with the weights `w`, `s` of `p`
    /// (`s` only for [`Rows::Nodes`]); `[num_nodes, f]`.
    fn try_weighted_sum<F: Dim, T: Tape<E, Self>>(
        x: Rows2<F, E, Self, T>,
        g: &Graph,
        rows: Rows,
        p: &Propagation,
    ) -> Result<Rows2<F, E, Self, T>, Self::Err>;

    /// `out[i] = max_{e: → i} x[row(e)]` element-wise (0 without incoming edges).
    fn try_max<F: Dim, T: Tape<E, Self>>(x: Rows2<F, E, Self, T>, g: &Graph, rows: Rows) -> Result<Rows2<F, E, Self, T>, Self::Err>;
}

fn check_rows(g: &Graph, n: usize, rows: Rows) -> Result<(), GraphError> {
    match rows {
        Rows::Nodes => g.check_nodes(n),
        Rows::Edges if n != g.num_edges() => Err(GraphError::EdgeFeatureCount { expected: g.num_edges(), given: n }),
        Rows::Edges => Ok(()),
    }
}

/// `x[source(e)]` for every edge: `[n, f] → [num_edges, f]`.
pub fn gather_source<F: Dim, E: Dtype, D: GraphKernel<E>, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
) -> Result<Rows2<F, E, D, T>, GraphError> {
    g.check_nodes(x.shape().0)?;
    D::try_gather(x, g, End::Source).map_err(device_err)
}

/// `x[target(e)]` for every edge: `[n, f] → [num_edges, f]`.
pub fn gather_target<F: Dim, E: Dtype, D: GraphKernel<E>, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
) -> Result<Rows2<F, E, D, T>, GraphError> {
    g.check_nodes(x.shape().0)?;
    D::try_gather(x, g, End::Target).map_err(device_err)
}

/// Aggregates messages (`[num_edges, f]`, one row per edge) at their targets: `[n, f]`.
pub fn scatter<F: Dim, E: Dtype, D: GraphKernel<E>, T: Tape<E, D>>(
    m: Rows2<F, E, D, T>,
    g: &Graph,
    aggr: Aggr,
) -> Result<Rows2<F, E, D, T>, GraphError> {
    reduce(m, g, Rows::Edges, aggr)
}

/// Aggregates the neighbours' features (`[n, f]`) at each node: `aggr_{j → i} x[j]`, `[n, f]`
/// — [`scatter`] of [`gather_source`] without materialising the messages.
pub fn aggregate<F: Dim, E: Dtype, D: GraphKernel<E>, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
    aggr: Aggr,
) -> Result<Rows2<F, E, D, T>, GraphError> {
    reduce(x, g, Rows::Nodes, aggr)
}

fn reduce<F: Dim, E: Dtype, D: GraphKernel<E>, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
    rows: Rows,
    aggr: Aggr,
) -> Result<Rows2<F, E, D, T>, GraphError> {
    check_rows(g, x.shape().0, rows)?;
    match aggr {
        Aggr::Sum => D::try_weighted_sum(x, g, rows, &g.sum_propagation()),
        Aggr::Mean => D::try_weighted_sum(x, g, rows, g.mean_propagation()),
        Aggr::Max => D::try_max(x, g, rows),
    }
    .map_err(device_err)
}

/// The sparse–dense product `P·x` of the weighted adjacency `p` (edge `j → i` weighs `w[e]`
/// in row `i`, column `j`; plus `s[i]` on the diagonal) with node features `x` `[n, f]`.
pub fn propagate<F: Dim, E: Dtype, D: GraphKernel<E>, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
    p: &Propagation,
) -> Result<Rows2<F, E, D, T>, GraphError> {
    g.check_nodes(x.shape().0)?;
    D::try_weighted_sum(x, g, Rows::Nodes, p).map_err(device_err)
}

/// `D̂^-½ (A + I) D̂^-½ · x`, PyTorch Geometric's `GCNConv` propagation
/// ([`Graph::gcn_propagation`]).
pub fn gcn_propagate<F: Dim, E: Dtype, D: GraphKernel<E>, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
) -> Result<Rows2<F, E, D, T>, GraphError> {
    propagate(x, g, g.gcn_propagation())
}

fn row_of(g: &Graph, rows: Rows, e: usize) -> usize {
    match rows {
        Rows::Nodes => g.inner.src[e],
        Rows::Edges => e,
    }
}

/// [`GraphKernel::try_gather`] composed of dfdx's `gather`.
pub fn gather_composed<F: Dim, E: Float, D: Device<E> + crate::ops::floor::upload::IndexUpload, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
    end: End,
) -> Result<Rows2<F, E, D, T>, D::Err> {
    let idx = match end {
        End::Source => g.inner.src.clone(),
        End::Target => g.inner.tgt.clone(),
    };
    let m = idx.len();
    let idx = crate::ops::floor::upload::from_slice(x.device(), &idx, (m,))?;
    x.try_gather(idx)
}

/// [`GraphKernel::try_weighted_sum`] composed of dfdx ops: a dense `[n, rows]` weight matrix
/// times `x` (`O(n · rows)` memory).
pub fn weighted_sum_composed<F: Dim, E: Float, D: Device<E>, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
    rows: Rows,
    p: &Propagation,
) -> Result<Rows2<F, E, D, T>, D::Err> {
    let (r, f) = *x.shape();
    let n = g.num_nodes();
    let mut w = vec![0.0f64; r * n];
    // Transposed: wt[row, i].
    for e in 0..g.num_edges() {
        w[row_of(g, rows, e) * n + g.inner.tgt[e]] += p.edge[e];
    }
    if let (Rows::Nodes, Some(s)) = (rows, &p.self_loop) {
        for i in 0..n {
            w[i * n + i] += s[i];
        }
    }
    let w: Vec<E> = w.into_iter().map(|v| E::from_f64(v).unwrap()).collect();
    let wt = crate::ops::floor::upload::from_slice(x.device(), &w, (r, n))?;
    let yt: Tensor<(F, usize), E, D, T> = x.try_permute::<_, Axes2<1, 0>>()?.try_matmul(wt)?;
    let _ = f;
    yt.try_permute::<_, Axes2<1, 0>>()
}

/// [`GraphKernel::try_max`] composed of dfdx ops: the rows of each node's incoming edges,
/// gathered into `[n, max in-degree, f]` (padding masked out by a large negative addend),
/// reduced by `max`, and zeroed for nodes without incoming edges.
pub fn max_composed<F: Dim, E: Float, D: Device<E> + crate::ops::floor::upload::IndexUpload, T: Tape<E, D>>(
    x: Rows2<F, E, D, T>,
    g: &Graph,
    rows: Rows,
) -> Result<Rows2<F, E, D, T>, D::Err> {
    let (r, f) = *x.shape();
    let n = g.num_nodes();
    let dev = x.device().clone();
    let k = (0..n).map(|i| g.in_degree(i)).max().unwrap_or(0);
    if k == 0 || r == 0 {
        let (x, tape) = x.split_tape();
        let zero = dev.try_zeros_like(&(n, f))?;
        drop(x);
        return Ok(zero.put_tape(tape));
    }
    let (mut idx, mut pad, mut has) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k), Vec::with_capacity(n));
    let big = E::from_f64(-1e30).unwrap();
    for i in 0..n {
        let es = &g.inner.in_edges[g.inner.in_ptr[i]..g.inner.in_ptr[i + 1]];
        for s in 0..k {
            match es.get(s) {
                Some(&e) => {
                    idx.push(row_of(g, rows, e));
                    pad.push(E::zero());
                }
                None => {
                    idx.push(0);
                    pad.push(big);
                }
            }
        }
        has.push(if es.is_empty() { E::zero() } else { E::one() });
    }
    let idx = crate::ops::floor::upload::from_slice(&dev, &idx, (n * k,))?;
    let pad = crate::ops::floor::upload::from_slice(&dev, &pad, (n, k))?.try_broadcast_like::<_, Axis<2>>(&(n, k, f))?;
    let has = crate::ops::floor::upload::from_slice(&dev, &has, (n,))?.try_broadcast_like::<_, Axis<1>>(&(n, f))?;
    let gathered = x.try_gather(idx)?.try_reshape_like(&(n, k, f))?;
    gathered.try_add(pad)?.try_max::<(usize, F), Axis<1>>()?.try_mul(has)
}

#[cfg(test)]
pub(crate) fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())), "element {i}: {x} vs {y}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::radial_basis::assert_matches_finite_differences;

    type X = Tensor<(usize, usize), f64, Cpu>;

    fn graph() -> Graph {
        // Node 4 has no incoming edges; a self-loop and a repeated edge.
        Graph::new(5, &[(0, 1), (2, 1), (3, 1), (1, 0), (1, 2), (2, 2), (4, 3), (4, 3), (0, 3)]).unwrap()
    }

    fn ops() -> Vec<(&'static str, Rows)> {
        vec![("sum", Rows::Nodes), ("mean", Rows::Nodes), ("max", Rows::Nodes), ("gcn", Rows::Nodes),
             ("sum", Rows::Edges), ("mean", Rows::Edges), ("max", Rows::Edges), ("src", Rows::Nodes), ("tgt", Rows::Nodes)]
    }

    fn run<T: Tape<f64, Cpu>>(x: Tensor<(usize, usize), f64, Cpu, T>, g: &Graph, op: &str, rows: Rows, fast: bool) -> Tensor<(usize, usize), f64, Cpu, T> {
        let p = match op {
            "sum" => g.sum_propagation(),
            "mean" => g.mean_propagation().clone(),
            "gcn" => g.gcn_propagation().clone(),
            _ => g.sum_propagation(),
        };
        match (op, fast) {
            ("src", true) => Cpu::try_gather(x, g, End::Source).unwrap(),
            ("src", false) => gather_composed(x, g, End::Source).unwrap(),
            ("tgt", true) => Cpu::try_gather(x, g, End::Target).unwrap(),
            ("tgt", false) => gather_composed(x, g, End::Target).unwrap(),
            ("max", true) => Cpu::try_max(x, g, rows).unwrap(),
            ("max", false) => max_composed(x, g, rows).unwrap(),
            (_, true) => Cpu::try_weighted_sum(x, g, rows, &p).unwrap(),
            (_, false) => weighted_sum_composed(x, g, rows, &p).unwrap(),
        }
    }

    fn input(dev: &Cpu, g: &Graph, rows: Rows, f: usize) -> X {
        let r = if rows == Rows::Nodes { g.num_nodes() } else { g.num_edges() };
        dev.sample_normal_like(&(r, f))
    }

    #[test]
    fn cpu_kernels_match_the_composed_paths_forward_and_backward() {
        let dev = Cpu::seed_from_u64(3);
        let g = graph();
        // Without repeated edges (tied maxima): there the composed path, like dfdx's `max`,
        // sends the gradient to every tied maximum; the kernel to the first.
        let g1 = Graph::new(5, &[(0, 1), (2, 1), (3, 1), (1, 0), (1, 2), (2, 2), (4, 3), (0, 3)]).unwrap();
        for (op, rows) in ops() {
            let g = if op == "max" { &g1 } else { &g };
            let x = input(&dev, g, rows, 3);
            let a = run(x.leaky_trace(), g, op, rows, true);
            let b = run(x.leaky_trace(), g, op, rows, false);
            assert_close(&a.as_vec(), &b.as_vec(), 1e-12);
            let w: X = dev.sample_normal_like(a.shape());
            let ga = (a * w.clone()).sum().backward();
            let gb = (b * w).sum().backward();
            assert_close(&ga.get(&x).as_vec(), &gb.get(&x).as_vec(), 1e-12);
        }
    }

    /// The same on a graph large enough for the kernels' rows to be shared between threads
    /// (past `cpu::PAR_MIN` elements of work), so that each task's rows are checked too.
    #[test]
    fn cpu_kernels_match_the_composed_paths_on_a_large_graph() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let dev = Cpu::seed_from_u64(5);
        let mut rng = StdRng::seed_from_u64(5);
        let n = 3000;
        let mut pairs: Vec<(usize, usize)> = (0..12_000).map(|_| (rng.gen_range(0..n), rng.gen_range(0..n))).collect();
        // No repeated edges (tied maxima, see above).
        pairs.sort_unstable();
        pairs.dedup();
        let g = Graph::new(n, &pairs).unwrap();
        assert!(n * 8 >= 1 << 14);
        for (op, rows) in ops() {
            let x = input(&dev, &g, rows, 8);
            let a = run(x.leaky_trace(), &g, op, rows, true);
            let b = run(x.leaky_trace(), &g, op, rows, false);
            assert_close(&a.as_vec(), &b.as_vec(), 1e-12);
            let w: X = dev.sample_normal_like(a.shape());
            let ga = (a * w.clone()).sum().backward();
            let gb = (b * w).sum().backward();
            assert_close(&ga.get(&x).as_vec(), &gb.get(&x).as_vec(), 1e-12);
        }
    }

    #[test]
    fn cpu_kernels_match_finite_differences() {
        let dev = Cpu::seed_from_u64(4);
        let g = graph();
        for (op, rows) in ops() {
            let x = input(&dev, &g, rows, 2);
            let shape = *x.shape();
            let out = run(x.clone(), &g, op, rows, true);
            let w: X = dev.sample_normal_like(out.shape());
            let f = |v: &[f64]| (run(dev.tensor_from_vec(v.to_vec(), shape), &g, op, rows, true) * w.clone()).sum::<Rank0, _>().array();
            let grads = (run(x.leaky_trace(), &g, op, rows, true) * w.clone()).sum().backward();
            assert_matches_finite_differences(&x.as_vec(), &grads.get(&x).as_vec(), f);
        }
    }

    #[test]
    fn values_by_hand() {
        let dev = Cpu::default();
        let g = Graph::new(3, &[(0, 2), (1, 2), (2, 0)]).unwrap();
        let x: X = dev.tensor_from_vec(vec![1.0, -1.0, 3.0, 5.0, 10.0, 20.0], (3, 2));
        assert_eq!(aggregate(x.clone(), &g, Aggr::Sum).unwrap().as_vec(), vec![10.0, 20.0, 0.0, 0.0, 4.0, 4.0]);
        assert_eq!(aggregate(x.clone(), &g, Aggr::Mean).unwrap().as_vec(), vec![10.0, 20.0, 0.0, 0.0, 2.0, 2.0]);
        assert_eq!(aggregate(x.clone(), &g, Aggr::Max).unwrap().as_vec(), vec![10.0, 20.0, 0.0, 0.0, 3.0, 5.0]);
        assert_eq!(gather_target(x.clone(), &g).unwrap().as_vec(), vec![10.0, 20.0, 10.0, 20.0, 1.0, -1.0]);
        let m = gather_source(x.clone(), &g).unwrap();
        assert_eq!(scatter(m, &g, Aggr::Sum).unwrap().as_vec(), vec![10.0, 20.0, 0.0, 0.0, 4.0, 4.0]);
        // Errors, not panics.
        let bad: X = dev.zeros_like(&(4, 2));
        assert_eq!(aggregate(bad.clone(), &g, Aggr::Sum).unwrap_err(), GraphError::NodeCount { num_nodes: 3, rows: 4 });
        assert!(gather_source(bad.clone(), &g).is_err());
        assert!(scatter(bad, &g, Aggr::Max).is_err());
    }

    #[test]
    fn f32_and_empty_graphs() {
        let dev = Cpu::default();
        let g = Graph::new(3, &[]).unwrap();
        let x: Tensor<(usize, Const<4>), f32, _> = dev.ones_like(&(3, Const));
        for aggr in [Aggr::Sum, Aggr::Mean, Aggr::Max] {
            assert_eq!(aggregate(x.clone(), &g, aggr).unwrap().as_vec(), vec![0.0; 12]);
        }
        assert_eq!(gather_source(x.leaky_trace(), &g).unwrap().shape().0, 0);
        let e = Graph::new(0, &[]).unwrap();
        let x0: Tensor<(usize, Const<4>), f32, _> = dev.zeros_like(&(0, Const));
        assert_eq!(gcn_propagate(x0.leaky_trace(), &e).unwrap().shape().0, 0);
    }
}
