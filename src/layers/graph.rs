//! Graph layers (DSL §6): `gcn`, `graph_conv`, `message_passing`, `cfconv`, `graph_pool`,
//! `route`.
//!
//! A graph network has no batch axis: node features are `[n, f]`
//! (`Tensor<(usize, Const<F>), E, D, T>`) over every node of a (batched) [`Graph`], and a
//! graph layer's input is the pair `(x, &graph)` (the tape rides on `x`):
//!
//! ```
//! use typenet::prelude::*;
//! use typenet::graph::Graph;
//! use typenet::layers::Gcn;
//!
//! let dev = Cpu::default();
//! let g = Graph::undirected(3, &[(0, 1), (1, 2)]).unwrap();
//! let gcn = Gcn::<4, 2, f32, Cpu>::build(&dev);
//! let x: Tensor<(usize, Const<4>), f32, Cpu> = dev.ones_like(&(3, Const));
//! let y = gcn.try_forward((x, &g)).unwrap();
//! assert_eq!(y.shape().0, 3);
//! ```
//!
//! Every layer returns `Err(GraphError)` (never panics) when the node axis does not match the
//! graph, when edge features are missing or of the wrong width, or on a device error. The
//! parameters carry PyTorch Geometric's key names.

use std::marker::PhantomData;

use dfdx::prelude::*;

use crate::graph::{device_err, Graph, GraphError};
use crate::init::{GlorotUniform, InitScheme, TorchDefault};
use crate::layers::{Dense, DenseNoBias};
use crate::ops::scatter::{self, Aggr};
use crate::ops::DenseKernel;
use crate::{Backend, Float};

/// A tensor over the nodes (or edges, or graphs) of a graph.
pub type Nodes<const F: usize, E, D, T = NoneTape> = Tensor<(usize, Const<F>), E, D, T>;

/// An aggregation chosen in a layer's type: [`SumAggr`], [`MeanAggr`], [`MaxAggr`].
pub trait Aggregation: 'static + Default + Clone + Copy + std::fmt::Debug + Send + Sync {
    /// The run-time aggregation.
    const AGGR: Aggr;
}
/// `aggr = sum`.
#[derive(Default, Clone, Copy, Debug)]
pub struct SumAggr;
/// `aggr = mean`.
#[derive(Default, Clone, Copy, Debug)]
pub struct MeanAggr;
/// `aggr = max`.
#[derive(Default, Clone, Copy, Debug)]
pub struct MaxAggr;
impl Aggregation for SumAggr {
    const AGGR: Aggr = Aggr::Sum;
}
impl Aggregation for MeanAggr {
    const AGGR: Aggr = Aggr::Mean;
}
impl Aggregation for MaxAggr {
    const AGGR: Aggr = Aggr::Max;
}

fn dev_err<T, Err: std::fmt::Debug>(r: Result<T, Err>) -> Result<T, GraphError> {
    r.map_err(device_err)
}

fn add_bias<const O: usize, E: Dtype, D: Device<E>, T: Tape<E, D>>(
    y: Nodes<O, E, D, T>,
    b: &Tensor<Rank1<O>, E, D>,
) -> Result<Nodes<O, E, D, T>, GraphError> {
    let shape = *y.shape();
    dev_err(y.try_add(dev_err(b.retaped::<T>().try_broadcast_like(&shape))?))
}

/// `x·Wᵀ` through the dense op (the GEMM door on `Cpu`).
fn linear<const I: usize, const O: usize, E: Dtype, D: DenseKernel<E>, T: Tape<E, D>>(
    x: Nodes<I, E, D, T>,
    w: &Tensor<Rank2<O, I>, E, D>,
) -> Result<Nodes<O, E, D, T>, GraphError> {
    let n = x.shape().0;
    let x = dev_err(x.try_reshape_like(&(n, I)))?;
    let w = match w.clone().try_realize::<(usize, usize)>() {
        Ok(w) => w,
        Err(_) => return Err(GraphError::Device("realize".into())),
    };
    let y = dev_err(D::dense_op(x, w, None))?;
    dev_err(y.try_reshape_like(&(n, Const::<O>)))
}

// ---------------------------------------------------------------------------------------
// gcn

/// `gcn(OUT)`: Kipf & Welling's graph convolution, PyTorch Geometric's `GCNConv` with its
/// defaults: `y = D̂^-½ (A + I) D̂^-½ · x Wᵀ + b` (self-loops replace the graph's own, degrees
/// counted at the targets), glorot-uniform weight, zero bias; keys `lin.weight` `[OUT, IN]`
/// and `bias` `[OUT]` (PyG ≥ 2.3).
#[derive(Debug, Clone)]
pub struct Gcn<const IN: usize, const OUT: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// `lin.weight`, `[OUT, IN]`.
    pub weight: Tensor<Rank2<OUT, IN>, E, D>,
    /// `bias`, `[OUT]`.
    pub bias: Tensor<Rank1<OUT>, E, D>,
}

impl<const IN: usize, const OUT: usize, E: Float, D: Device<E>> TensorCollection<E, D> for Gcn<IN, OUT, E, D> {
    type To<E2: Dtype, D2: Device<E2>> = Gcn<IN, OUT, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::tensor("lin.weight", |s| &s.weight, |s| &mut s.weight,
                    TensorOptions::reset_with(|t| GlorotUniform::weight(t, IN, OUT))),
                Self::tensor("bias", |s| &s.bias, |s| &mut s.bias, TensorOptions::reset_to_zeros()),
            ),
            |(weight, bias)| Gcn { weight, bias },
        )
    }
}

impl<const IN: usize, const OUT: usize, E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule for Gcn<IN, OUT, E, D> {}

impl<'g, const IN: usize, const OUT: usize, E: Float, D: Backend<E>, T: Tape<E, D>> Module<(Nodes<IN, E, D, T>, &'g Graph)>
    for Gcn<IN, OUT, E, D>
{
    type Output = Nodes<OUT, E, D, T>;
    type Error = GraphError;
    fn try_forward(&self, (x, g): (Nodes<IN, E, D, T>, &'g Graph)) -> Result<Self::Output, GraphError> {
        g.check_nodes(x.shape().0)?;
        let h = linear(x, &self.weight)?;
        add_bias(scatter::gcn_propagate(h, g)?, &self.bias)
    }
}

// ---------------------------------------------------------------------------------------
// graph_conv

/// `graph_conv(OUT, aggr = sum | mean | max)`: PyTorch Geometric's `GraphConv`,
/// `y_i = W_rel · aggr_{j → i} x_j + b + W_root · x_i`; keys `lin_rel.weight`, `lin_rel.bias`,
/// `lin_root.weight` (PyTorch's `Linear` initialisation).
#[derive(Debug, Clone)]
pub struct GraphConv<const IN: usize, const OUT: usize, A: Aggregation = SumAggr, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// `lin_rel` (on the aggregated neighbours, with bias).
    pub lin_rel: Dense<IN, OUT, E, D>,
    /// `lin_root` (on the node itself, no bias).
    pub lin_root: DenseNoBias<IN, OUT, E, D>,
    aggr: PhantomData<A>,
}

impl<const IN: usize, const OUT: usize, A: Aggregation, E: Float, D: Device<E>> TensorCollection<E, D>
    for GraphConv<IN, OUT, A, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = GraphConv<IN, OUT, A, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("lin_rel", |s| &s.lin_rel, |s| &mut s.lin_rel),
                Self::module("lin_root", |s| &s.lin_root, |s| &mut s.lin_root),
            ),
            |(lin_rel, lin_root)| GraphConv { lin_rel, lin_root, aggr: PhantomData },
        )
    }
}

impl<const IN: usize, const OUT: usize, A: Aggregation, E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule
    for GraphConv<IN, OUT, A, E, D>
{
}

impl<'g, const IN: usize, const OUT: usize, A: Aggregation, E: Float, D: Backend<E>, T: Tape<E, D>>
    Module<(Nodes<IN, E, D, T>, &'g Graph)> for GraphConv<IN, OUT, A, E, D>
{
    type Output = Nodes<OUT, E, D, T>;
    type Error = GraphError;
    fn try_forward(&self, (x, g): (Nodes<IN, E, D, T>, &'g Graph)) -> Result<Self::Output, GraphError> {
        g.check_nodes(x.shape().0)?;
        let root = linear(x.retaped::<T>(), &self.lin_root.weight)?;
        // Sum and mean commute with the linear map: aggregate the narrower side.
        let rel = if A::AGGR != Aggr::Max && OUT < IN {
            scatter::aggregate(linear(x, &self.lin_rel.weight)?, g, A::AGGR)?
        } else {
            linear(scatter::aggregate(x, g, A::AGGR)?, &self.lin_rel.weight)?
        };
        add_bias(dev_err(rel.try_add(root))?, &self.lin_rel.bias)
    }
}

// ---------------------------------------------------------------------------------------
// message_passing

/// `message_passing(aggr) { BLOCK }`: each edge `j → i` carries the message
/// `m_ij = BLOCK([x_i, x_j, e_ij])` (target features, source features, then the edge's `K`
/// features; `C = 2F + K` is the block's input width, checked at compile time against the
/// node width and at run time against the graph's edge features), aggregated over the
/// incoming edges of each node: `y_i = aggr_{j → i} m_ij`. The block's parameters are under
/// the key `nn`.
#[derive(Debug, Clone)]
pub struct MessagePassing<const C: usize, B, A: Aggregation = SumAggr> {
    /// The message network, `[C] → [M]` per edge.
    pub nn: B,
    aggr: PhantomData<A>,
}

impl<const C: usize, B, A: Aggregation> MessagePassing<C, B, A> {
    /// Wraps a message network.
    pub fn new(nn: B) -> Self {
        MessagePassing { nn, aggr: PhantomData }
    }
}

impl<const C: usize, B: TensorCollection<E, D>, A: Aggregation, E: Dtype, D: Device<E>> TensorCollection<E, D>
    for MessagePassing<C, B, A>
{
    type To<E2: Dtype, D2: Device<E2>> = MessagePassing<C, B::To<E2, D2>, A>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(Self::module("nn", |s| &s.nn, |s| &mut s.nn), |nn| MessagePassing { nn, aggr: PhantomData })
    }
}

/// `[x_i, x_j, e_ij]` for every edge, `[num_edges, C]`.
fn edge_inputs<const F: usize, const C: usize, E: Float, D: Backend<E>, T: Tape<E, D>>(
    x: Nodes<F, E, D, T>,
    g: &Graph,
) -> Result<Nodes<C, E, D, T>, GraphError> {
    const { assert!(C >= 2 * F, "message_passing: the block's input is narrower than [x_i, x_j]") };
    let k = C - 2 * F;
    g.check_nodes(x.shape().0)?;
    let m = g.num_edges();
    let xi = scatter::gather_target(x.retaped::<T>(), g)?.try_realize::<(usize, usize)>().map_err(|_| GraphError::Device("realize".into()))?;
    let xj = scatter::gather_source(x, g)?.try_realize::<(usize, usize)>().map_err(|_| GraphError::Device("realize".into()))?;
    let cat = dev_err((xi, xj).try_concat_along(Axis::<1>))?;
    let cat = if k > 0 {
        let f = match g.edge_features() {
            Some(f) if g.edge_feature_width() == Some(k) => f,
            _ => return Err(GraphError::EdgeFeatureWidth { expected: k, given: g.edge_feature_width() }),
        };
        let ef: Tensor<(usize, usize), E, D> =
            {
            let host: Vec<E> = f.iter().map(|v| E::from_f64(*v).unwrap()).collect();
            dev_err(crate::ops::floor::upload::from_slice(cat.device(), &host, (m, k)))?
        };
        dev_err((cat, ef).try_concat_along(Axis::<1>))?
    } else {
        cat
    };
    cat.try_realize::<(usize, Const<C>)>().map_err(|_| GraphError::Device("message width".into()))
}

impl<'g, const F: usize, const C: usize, const M: usize, B, A: Aggregation, E: Float, D: Backend<E>, T: Tape<E, D>>
    Module<(Nodes<F, E, D, T>, &'g Graph)> for MessagePassing<C, B, A>
where
    B: Module<Nodes<C, E, D, T>, Output = Nodes<M, E, D, T>>,
{
    type Output = Nodes<M, E, D, T>;
    type Error = GraphError;
    fn try_forward(&self, (x, g): (Nodes<F, E, D, T>, &'g Graph)) -> Result<Self::Output, GraphError> {
        let msg = dev_err(self.nn.try_forward(edge_inputs::<F, C, E, D, T>(x, g)?))?;
        scatter::scatter(msg, g, A::AGGR)
    }
}

impl<'g, const F: usize, const C: usize, const M: usize, B, A: Aggregation, E: Float, D: Backend<E>, T: Tape<E, D>>
    ModuleMut<(Nodes<F, E, D, T>, &'g Graph)> for MessagePassing<C, B, A>
where
    B: ModuleMut<Nodes<C, E, D, T>, Output = Nodes<M, E, D, T>>,
{
    type Output = Nodes<M, E, D, T>;
    type Error = GraphError;
    fn try_forward_mut(&mut self, (x, g): (Nodes<F, E, D, T>, &'g Graph)) -> Result<Self::Output, GraphError> {
        let msg = dev_err(self.nn.try_forward_mut(edge_inputs::<F, C, E, D, T>(x, g)?))?;
        scatter::scatter(msg, g, A::AGGR)
    }
}

// ---------------------------------------------------------------------------------------
// graph_pool

/// `graph_pool(sum | mean | max)`: one row per graph of the batch, `[n, f] → [num_graphs, f]`
/// (PyTorch Geometric's `global_add_pool`, `global_mean_pool`, `global_max_pool`; an empty
/// graph pools to 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphPool<A: Aggregation = SumAggr>(PhantomData<A>);

impl<A: Aggregation, E: Dtype, D: Device<E>> TensorCollection<E, D> for GraphPool<A> {
    type To<E2: Dtype, D2: Device<E2>> = GraphPool<A>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(_: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        Ok(Some(GraphPool(PhantomData)))
    }
}

impl<A: Aggregation> dfdx::nn::NonMutableModule for GraphPool<A> {}

impl<'g, const F: usize, A: Aggregation, E: Float, D: Backend<E>, T: Tape<E, D>> Module<(Nodes<F, E, D, T>, &'g Graph)>
    for GraphPool<A>
{
    type Output = Nodes<F, E, D, T>;
    type Error = GraphError;
    fn try_forward(&self, (x, g): (Nodes<F, E, D, T>, &'g Graph)) -> Result<Self::Output, GraphError> {
        g.check_nodes(x.shape().0)?;
        let pool = g.pool_graph();
        let y = scatter::scatter(x, pool, A::AGGR)?;
        dev_err(y.try_slice((..g.num_graphs(), ..)))
    }
}

// ---------------------------------------------------------------------------------------
// cfconv

/// `cfconv(OUT, rbf = RBF, cutoff = r, positions = p)`: SchNet's continuous-filter
/// convolution (Schütt et al. 2017), as PyTorch Geometric's `CFConv` with `OUT` filters:
///
/// ```text
/// y_i = lin2( Σ_{j → i, r_ij < r_c} lin1(x)_j ⊙ W(r_ij) )
/// W(r) = nn(exp(−γ (r − μ_k)²)_k) · ½ (cos(π r / r_c) + 1)
/// nn = Linear(RBF, OUT) → shifted softplus → Linear(OUT, OUT)
/// ```
///
/// with `μ_k` evenly spaced over `[0, r_c]` and `γ = ½ / Δμ²` (PyG's `GaussianSmearing`).
/// Keys `lin1.weight` (no bias), `lin2.weight`, `lin2.bias`, `nn.0.*`, `nn.2.*`. Input
/// `(x, positions, &graph)` (neighbours along the graph's edges) or `(x, positions)`
/// (every other point; one sample). Differentiable with respect to the positions.
#[derive(Debug, Clone)]
pub struct CfConv<const IN: usize, const OUT: usize, const RBF: usize, E: Dtype = f32, D: Storage<E> = Cpu> {
    /// `lin1`, `[OUT, IN]`, no bias.
    pub lin1: DenseNoBias<IN, OUT, E, D, GlorotUniform>,
    /// `lin2`.
    pub lin2: Dense<OUT, OUT, E, D, TorchDefault>,
    /// `nn.0`: the filter network's first layer.
    pub filter1: Dense<RBF, OUT, E, D, GlorotUniform>,
    /// `nn.2`: the filter network's second layer.
    pub filter2: Dense<OUT, OUT, E, D, GlorotUniform>,
    /// The cutoff radius `r_c` (> 0, finite).
    pub cutoff: f64,
}

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Device<E>> TensorCollection<E, D>
    for CfConv<IN, OUT, RBF, E, D>
{
    type To<E2: Dtype, D2: Device<E2>> = CfConv<IN, OUT, RBF, E2, D2>;
    fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
        visitor.visit_fields(
            (
                Self::module("lin1", |s| &s.lin1, |s| &mut s.lin1),
                Self::module("lin2", |s| &s.lin2, |s| &mut s.lin2),
                Self::module("nn.0", |s| &s.filter1, |s| &mut s.filter1),
                Self::module("nn.2", |s| &s.filter2, |s| &mut s.filter2),
            ),
            // The cutoff is not a tensor; a rebuilt layer starts from the default and the
            // caller (or the macro) sets it.
            |(lin1, lin2, filter1, filter2)| CfConv { lin1, lin2, filter1, filter2, cutoff: 5.0 },
        )
    }
}

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Dtype, D: Storage<E>> dfdx::nn::NonMutableModule
    for CfConv<IN, OUT, RBF, E, D>
{
}

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Backend<E>> CfConv<IN, OUT, RBF, E, D> {
    /// Sets the cutoff radius (`Err` unless finite and > 0).
    pub fn with_cutoff(mut self, cutoff: f64) -> Result<Self, GraphError> {
        if !(cutoff.is_finite() && cutoff > 0.0) {
            return Err(GraphError::NotFinite("the cfconv cutoff"));
        }
        self.cutoff = cutoff;
        Ok(self)
    }

    fn run<T: Tape<E, D>>(
        &self,
        x: Nodes<IN, E, D, T>,
        pos: Nodes<3, E, D, T>,
        g: &Graph,
    ) -> Result<Nodes<OUT, E, D, T>, GraphError> {
        g.check_nodes(x.shape().0)?;
        g.check_nodes(pos.shape().0)?;
        if !(self.cutoff.is_finite() && self.cutoff > 0.0) {
            return Err(GraphError::NotFinite("the cfconv cutoff"));
        }
        let m = g.num_edges();
        let dev = x.device().clone();
        let rc = self.cutoff;
        // Distances along the edges (differentiable in the positions).
        let pi = scatter::gather_target(pos.retaped::<T>(), g)?;
        let pj = scatter::gather_source(pos, g)?;
        let pj = dev_err(pj.try_negate())?;
        let r2 = dev_err(dev_err(dev_err(pi.try_add(pj))?.try_square())?.try_sum::<(usize,), Axis<1>>())?;
        let r = dev_err(r2.try_sqrt())?;
        let c = dev_err(
            dev_err(dev_err(dev_err(dev_err(r.retaped::<T>().try_clamp(0.0, rc))?.try_mul(E::from_f64(std::f64::consts::PI / rc).unwrap()))?.try_cos())?.try_add(E::one()))?
                .try_mul(E::from_f64(0.5).unwrap()),
        )?;
        // Gaussian expansion.
        let spacing = if RBF > 1 { rc / (RBF - 1) as f64 } else { rc };
        let mu: Vec<E> = (0..RBF).map(|k| E::from_f64(k as f64 * spacing).unwrap()).collect();
        let mu = dev_err(crate::ops::floor::upload::from_slice(&dev, &mu, (Const::<RBF>,)))?;
        let grid = (m, Const::<RBF>);
        let rbf = dev_err(r.try_broadcast_like::<_, Axis<1>>(&grid))?;
        let rbf = dev_err(rbf.try_sub(dev_err(mu.try_broadcast_like::<_, Axis<0>>(&grid))?))?;
        let gamma = E::from_f64(-0.5 / (spacing * spacing)).unwrap();
        let rbf = dev_err(dev_err(dev_err(rbf.try_square())?.try_mul(gamma))?.try_exp())?;
        // Filter network with the shifted softplus ln(1 + eˣ) − ln 2.
        let h = dev_err(self.filter1.try_forward(rbf))?;
        let h = dev_err(dev_err(dev_err(dev_err(h.try_exp())?.try_add(E::one()))?.try_ln())?.try_sub(E::from_f64(std::f64::consts::LN_2).unwrap()))?;
        let w = dev_err(self.filter2.try_forward(h))?;
        let w = dev_err(w.try_mul(dev_err(c.try_broadcast_like::<_, Axis<1>>(&(m, Const::<OUT>)))?))?;
        // Messages lin1(x)_j ⊙ W, summed at the targets.
        let xj = scatter::gather_source(linear(x, &self.lin1.weight)?, g)?;
        let y = scatter::scatter(dev_err(xj.try_mul(w))?, g, Aggr::Sum)?;
        dev_err(self.lin2.try_forward(y))
    }
}

impl<'g, const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Backend<E>, T: Tape<E, D>>
    Module<(Nodes<IN, E, D, T>, Nodes<3, E, D, T>, &'g Graph)> for CfConv<IN, OUT, RBF, E, D>
{
    type Output = Nodes<OUT, E, D, T>;
    type Error = GraphError;
    fn try_forward(&self, (x, pos, g): (Nodes<IN, E, D, T>, Nodes<3, E, D, T>, &'g Graph)) -> Result<Self::Output, GraphError> {
        self.run::<T>(x, pos, g)
    }
}

impl<const IN: usize, const OUT: usize, const RBF: usize, E: Float, D: Backend<E>, T: Tape<E, D>>
    Module<(Nodes<IN, E, D, T>, Nodes<3, E, D, T>)> for CfConv<IN, OUT, RBF, E, D>
{
    type Output = Nodes<OUT, E, D, T>;
    type Error = GraphError;
    /// Without a graph: every other point of the sample is a neighbour (those beyond the
    /// cutoff contribute 0).
    fn try_forward(&self, (x, pos): (Nodes<IN, E, D, T>, Nodes<3, E, D, T>)) -> Result<Self::Output, GraphError> {
        let n = x.shape().0;
        let edges: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (j, i))).collect();
        let g = Graph::new(n, &edges)?;
        self.run::<T>(x, pos, &g)
    }
}

// ---------------------------------------------------------------------------------------
// route

/// `route(z) { B0, B1, .. }`: row `i` of the input goes through branch `z[i]` (its species);
/// the outputs are put back in the input's row order. Input `(x, &z)` with `z: &[usize]`, one
/// per row; a species without a branch (or a length mismatch) is an `Err`. Branch `k`'s
/// parameters are under the key `k` (`0.weight`, ...), as an `nn.ModuleList`.
#[derive(Debug, Clone)]
pub struct Route<B>(pub B);

fn route_groups(z: &[usize], rows: usize, branches: usize) -> Result<Vec<Vec<usize>>, GraphError> {
    if z.len() != rows {
        return Err(GraphError::NodeCount { num_nodes: z.len(), rows });
    }
    let mut groups = vec![Vec::new(); branches];
    for (i, &s) in z.iter().enumerate() {
        if s >= branches {
            return Err(GraphError::IndexOutOfRange { index: i, value: s, bound: branches });
        }
        groups[s].push(i);
    }
    Ok(groups)
}

/// Puts the branches' outputs (rows of the groups in order) back in row order.
fn route_assemble<const O: usize, E: Float, D: Backend<E>, T: Tape<E, D>>(
    parts: Vec<Tensor<(usize, usize), E, D, T>>,
    groups: &[Vec<usize>],
    rows: usize,
    dev: &D,
) -> Result<Nodes<O, E, D, T>, GraphError> {
    let mut parts = parts.into_iter();
    let Some(mut all) = parts.next() else {
        return Err(GraphError::Device("route of an empty set (no rows)".into()));
    };
    for p in parts {
        all = dev_err((all, p).try_concat_along(Axis::<0>))?;
    }
    let order: Vec<usize> = groups.iter().flatten().copied().collect();
    let mut inverse = vec![0usize; rows];
    for (k, &i) in order.iter().enumerate() {
        inverse[i] = k;
    }
    let idx = dev_err(crate::ops::floor::upload::from_slice(dev, &inverse, (rows,)))?;
    let y = dev_err(all.try_gather(idx))?;
    y.try_realize::<(usize, Const<O>)>().map_err(|_| GraphError::Device("route width".into()))
}

macro_rules! route_impl {
    ($n:expr; $($B:ident $k:tt),+) => {
        #[allow(non_snake_case)]
        impl<E: Dtype, D: Device<E>, $($B: TensorCollection<E, D>),+> TensorCollection<E, D> for Route<($($B,)+)> {
            type To<E2: Dtype, D2: Device<E2>> = Route<($($B::To<E2, D2>,)+)>;
            fn iter_tensors<V: ModuleVisitor<Self, E, D>>(visitor: &mut V) -> Result<Option<Self::To<V::E2, V::D2>>, V::Err> {
                visitor.visit_fields(
                    ($(Self::module(stringify!($k), |s| &s.0.$k, |s| &mut s.0.$k),)+),
                    |($($B,)+)| Route(($($B,)+)),
                )
            }
        }

        #[allow(non_snake_case)]
        impl<'z, const F: usize, const O: usize, E: Float, D: Backend<E>, T: Tape<E, D>, $($B),+>
            Module<(Nodes<F, E, D, T>, &'z [usize])> for Route<($($B,)+)>
        where $($B: Module<Nodes<F, E, D, T>, Output = Nodes<O, E, D, T>>),+
        {
            type Output = Nodes<O, E, D, T>;
            type Error = GraphError;
            fn try_forward(&self, (x, z): (Nodes<F, E, D, T>, &'z [usize])) -> Result<Self::Output, GraphError> {
                let rows = x.shape().0;
                let groups = route_groups(z, rows, $n)?;
                let dev = x.device().clone();
                let mut parts = Vec::new();
                $(
                    // A species absent from this sample: its branch does not run (dfdx's
                    // gather panics on an empty index).
                    if !groups[$k].is_empty() {
                        let idx = dev_err(crate::ops::floor::upload::from_slice(&dev, &groups[$k], (groups[$k].len(),)))?;
                        let xk = dev_err(x.retaped::<T>().try_gather(idx))?;
                        parts.push(dev_err(self.0.$k.try_forward(xk))?.try_realize::<(usize, usize)>().map_err(|_| GraphError::Device("realize".into()))?);
                    }
                )+
                // Keep x's tape (the branches' inputs were retaped).
                let (x, tape) = x.split_tape();
                drop(x);
                let y = route_assemble::<O, E, D, T>(parts, &groups, rows, &dev)?;
                let (y, t2) = y.split_tape();
                Ok(y.put_tape(t2.merge(tape)))
            }
        }

        #[allow(non_snake_case)]
        impl<'z, const F: usize, const O: usize, E: Float, D: Backend<E>, T: Tape<E, D>, $($B),+>
            ModuleMut<(Nodes<F, E, D, T>, &'z [usize])> for Route<($($B,)+)>
        where $($B: ModuleMut<Nodes<F, E, D, T>, Output = Nodes<O, E, D, T>>),+
        {
            type Output = Nodes<O, E, D, T>;
            type Error = GraphError;
            fn try_forward_mut(&mut self, (x, z): (Nodes<F, E, D, T>, &'z [usize])) -> Result<Self::Output, GraphError> {
                let rows = x.shape().0;
                let groups = route_groups(z, rows, $n)?;
                let dev = x.device().clone();
                let mut parts = Vec::new();
                $(
                    // A species absent from this sample: its branch does not run (dfdx's
                    // gather panics on an empty index).
                    if !groups[$k].is_empty() {
                        let idx = dev_err(crate::ops::floor::upload::from_slice(&dev, &groups[$k], (groups[$k].len(),)))?;
                        let xk = dev_err(x.retaped::<T>().try_gather(idx))?;
                        parts.push(dev_err(self.0.$k.try_forward_mut(xk))?.try_realize::<(usize, usize)>().map_err(|_| GraphError::Device("realize".into()))?);
                    }
                )+
                let (x, tape) = x.split_tape();
                drop(x);
                let y = route_assemble::<O, E, D, T>(parts, &groups, rows, &dev)?;
                let (y, t2) = y.split_tape();
                Ok(y.put_tape(t2.merge(tape)))
            }
        }
    };
}
route_impl!(1; B0 0);
route_impl!(2; B0 0, B1 1);
route_impl!(3; B0 0, B1 1, B2 2);
route_impl!(4; B0 0, B1 1, B2 2, B3 3);
