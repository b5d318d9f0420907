//! Graphs for graph neural networks: [`Graph`], built on the host from directed
//! `(source, target)` edges, validated on construction and stored for fast aggregation.
//!
//! A graph network has no separate batch axis: its node axis runs over the nodes of every
//! graph of a batch ([`Graph::batch`] joins graphs into one disjoint graph, as PyTorch
//! Geometric batches), and messages flow along each edge from its source to its target
//! (PyTorch Geometric's default `flow = "source_to_target"`).

use std::sync::{Arc, OnceLock};

/// Why a graph could not be built or used.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphError {
    /// An edge names a node `node` outside `0..num_nodes`.
    NodeOutOfRange { edge: usize, node: usize, num_nodes: usize },
    /// Edge features given for `given` edges (rows) of a graph with `expected` edges, or a
    /// feature buffer whose length is not a multiple of the row width.
    EdgeFeatureCount { expected: usize, given: usize },
    /// A layer needs `k` features per edge and the graph has `given` (`None`: no features).
    EdgeFeatureWidth { expected: usize, given: Option<usize> },
    /// The node axis of a tensor has `rows` rows; the graph has `num_nodes` nodes.
    NodeCount { num_nodes: usize, rows: usize },
    /// A per-element index (`route`'s species) is out of range.
    IndexOutOfRange { index: usize, value: usize, bound: usize },
    /// A point's species (`radial_basis(.., species = z, kinds = k)`) is not below `kinds`.
    Species { point: usize, species: usize, kinds: usize },
    /// `given` species for `points` points (`radial_basis(.., species = z)`).
    SpeciesCount { points: usize, given: usize },
    /// Graphs of a batch disagree on their edge features.
    BatchEdgeFeatures,
    /// A non-finite value (NaN or infinity) where a finite one is needed.
    NotFinite(&'static str),
    /// A device error (allocation, ...).
    Device(String),
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphError::NodeOutOfRange { edge, node, num_nodes } => {
                write!(f, "edge {edge} names node {node}, but the graph has {num_nodes} nodes")
            }
            GraphError::EdgeFeatureCount { expected, given } => {
                write!(f, "edge features for {given} edges, but the graph has {expected} edges")
            }
            GraphError::EdgeFeatureWidth { expected, given: Some(g) } => {
                write!(f, "the layer needs {expected} features per edge, the graph has {g}")
            }
            GraphError::EdgeFeatureWidth { expected, given: None } => {
                write!(f, "the layer needs {expected} features per edge, the graph has none")
            }
            GraphError::NodeCount { num_nodes, rows } => {
                write!(f, "the node axis has {rows} rows, but the graph has {num_nodes} nodes")
            }
            GraphError::IndexOutOfRange { index, value, bound } => {
                write!(f, "element {index} has index {value}, not below {bound}")
            }
            GraphError::Species { point, species, kinds } => write!(
                f,
                "point {point} has species {species}, but `radial_basis` resolves only kinds = {kinds} species (0..{kinds})"
            ),
            GraphError::SpeciesCount { points, given } => {
                write!(f, "`radial_basis` is given {given} species for {points} points (one per point)")
            }
            GraphError::BatchEdgeFeatures => write!(f, "the graphs of a batch disagree on their edge features"),
            GraphError::NotFinite(what) => write!(f, "{what} is not finite"),
            GraphError::Device(e) => write!(f, "device error: {e}"),
        }
    }
}

impl std::error::Error for GraphError {}

/// Wraps a device error.
pub(crate) fn device_err<Err: std::fmt::Debug>(e: Err) -> GraphError {
    GraphError::Device(format!("{e:?}"))
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub num_nodes: usize,
    /// Per edge, in the order given.
    pub src: Vec<usize>,
    pub tgt: Vec<usize>,
    /// CSR by target: the edges into node `i` are `in_edges[in_ptr[i]..in_ptr[i + 1]]`
    /// (edge ids, in increasing order).
    pub in_ptr: Vec<usize>,
    pub in_edges: Vec<usize>,
    /// CSR by source (for the backward passes): the edges out of node `j`.
    pub out_ptr: Vec<usize>,
    pub out_edges: Vec<usize>,
    /// `[num_edges, k]`, row-major, when present.
    pub edge_features: Option<(usize, Arc<Vec<f64>>)>,
    /// Node offsets of the graphs of a batch: graph `b` owns nodes
    /// `graph_ptr[b]..graph_ptr[b + 1]`.
    pub graph_ptr: Vec<usize>,
    /// GCN weights (`D̂^-½ (A + I) D̂^-½`), computed on first use.
    pub gcn: OnceLock<Propagation>,
    pub mean: OnceLock<Propagation>,
    /// The graph `v → graph_of(v)` (edge `v`) over `max(n, num_graphs)` nodes, for pooling.
    pub pool: OnceLock<Graph>,
}

/// A directed graph over `num_nodes` nodes (see the [module docs](self)). Cheap to clone
/// (shared storage).
#[derive(Debug, Clone)]
pub struct Graph {
    pub(crate) inner: Arc<Inner>,
}

/// Weights of a linear propagation `out[i] = self_weight[i]·x[i] + Σ_{e: j→i} edge_weight[e]·x[j]`.
#[derive(Debug, Clone)]
pub struct Propagation {
    pub(crate) edge: Arc<Vec<f64>>,
    pub(crate) self_loop: Option<Arc<Vec<f64>>>,
}

fn csr(n: usize, key: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut ptr = vec![0usize; n + 1];
    for &k in key {
        ptr[k + 1] += 1;
    }
    for i in 0..n {
        ptr[i + 1] += ptr[i];
    }
    let mut fill = ptr.clone();
    let mut edges = vec![0usize; key.len()];
    for (e, &k) in key.iter().enumerate() {
        edges[fill[k]] = e;
        fill[k] += 1;
    }
    (ptr, edges)
}

impl Graph {
    /// A graph with `num_nodes` nodes and the directed edges `(source, target)`; messages
    /// flow from source to target. Repeated edges and self-loops are kept as given.
    /// An edge naming a node `≥ num_nodes` is an `Err`.
    pub fn new(num_nodes: usize, edges: &[(usize, usize)]) -> Result<Graph, GraphError> {
        for (e, &(s, t)) in edges.iter().enumerate() {
            for node in [s, t] {
                if node >= num_nodes {
                    return Err(GraphError::NodeOutOfRange { edge: e, node, num_nodes });
                }
            }
        }
        let src: Vec<usize> = edges.iter().map(|e| e.0).collect();
        let tgt: Vec<usize> = edges.iter().map(|e| e.1).collect();
        Ok(Self::from_parts(num_nodes, src, tgt, None, vec![0, num_nodes]))
    }

    fn from_parts(
        num_nodes: usize,
        src: Vec<usize>,
        tgt: Vec<usize>,
        edge_features: Option<(usize, Arc<Vec<f64>>)>,
        graph_ptr: Vec<usize>,
    ) -> Graph {
        let (in_ptr, in_edges) = csr(num_nodes, &tgt);
        let (out_ptr, out_edges) = csr(num_nodes, &src);
        Graph {
            inner: Arc::new(Inner {
                num_nodes,
                src,
                tgt,
                in_ptr,
                in_edges,
                out_ptr,
                out_edges,
                edge_features,
                graph_ptr,
                gcn: OnceLock::new(),
                mean: OnceLock::new(),
                pool: OnceLock::new(),
            }),
        }
    }

    /// An undirected graph: every pair `(a, b)` becomes the two directed edges `a → b`
    /// (edge `2p`) and `b → a` (edge `2p + 1`); a self-loop `(a, a)` also becomes two edges,
    /// so that edge `2p + 1` is always the reverse of edge `2p`.
    pub fn undirected(num_nodes: usize, edges: &[(usize, usize)]) -> Result<Graph, GraphError> {
        let both: Vec<(usize, usize)> = edges.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect();
        Graph::new(num_nodes, &both).map_err(|e| match e {
            GraphError::NodeOutOfRange { edge, node, num_nodes } => {
                GraphError::NodeOutOfRange { edge: edge / 2, node, num_nodes }
            }
            e => e,
        })
    }

    /// The same graph with `k` features per edge: `features` is `[num_edges, k]`, row-major,
    /// rows in edge order. A length other than `num_edges · k` (or `k = 0`), or a non-finite
    /// feature, is an `Err`.
    pub fn with_edge_features(self, k: usize, features: &[f64]) -> Result<Graph, GraphError> {
        let e = self.num_edges();
        match features.len().checked_div(k) {
            Some(rows) if features.len().is_multiple_of(k) && rows == e => {}
            rows => return Err(GraphError::EdgeFeatureCount { expected: e, given: rows.unwrap_or(features.len()) }),
        }
        if crate::ops::floor::cpu::first_non_finite(features).is_some() {
            return Err(GraphError::NotFinite("an edge feature"));
        }
        let i = &self.inner;
        Ok(Graph::from_parts(
            i.num_nodes,
            i.src.clone(),
            i.tgt.clone(),
            Some((k, Arc::new(features.to_vec()))),
            i.graph_ptr.clone(),
        ))
    }

    /// The disjoint union of `graphs`, as PyTorch Geometric batches them: the nodes of graph
    /// `b` follow those of graphs `0..b`, edges likewise; the node → graph map is kept
    /// ([`graph_of`](Self::graph_of), [`num_graphs`](Self::num_graphs)) and a batch of batches
    /// stays flat (each of its graphs counts). Edge features are kept when every graph has
    /// the same number per edge, dropped otherwise ([`try_batch`](Self::try_batch) makes
    /// that an `Err`).
    pub fn batch(graphs: &[Graph]) -> Graph {
        match Self::try_batch(graphs) {
            Ok(g) => g,
            Err(_) => {
                let stripped: Vec<Graph> = graphs
                    .iter()
                    .map(|g| {
                        let i = &g.inner;
                        Graph::from_parts(i.num_nodes, i.src.clone(), i.tgt.clone(), None, i.graph_ptr.clone())
                    })
                    .collect();
                Self::try_batch(&stripped).expect("graphs without edge features always batch")
            }
        }
    }

    /// [`batch`](Self::batch), with graphs that disagree on their edge features an `Err`.
    pub fn try_batch(graphs: &[Graph]) -> Result<Graph, GraphError> {
        let widths: Vec<Option<usize>> = graphs.iter().map(|g| g.edge_feature_width()).collect();
        if widths.windows(2).any(|w| w[0] != w[1]) {
            return Err(GraphError::BatchEdgeFeatures);
        }
        let (mut src, mut tgt, mut feats, mut graph_ptr) = (Vec::new(), Vec::new(), Vec::new(), vec![0usize]);
        let mut offset = 0;
        for g in graphs {
            let i = &g.inner;
            src.extend(i.src.iter().map(|s| s + offset));
            tgt.extend(i.tgt.iter().map(|t| t + offset));
            if let Some((_, f)) = &i.edge_features {
                feats.extend_from_slice(f);
            }
            graph_ptr.extend(i.graph_ptr[1..].iter().map(|p| p + offset));
            offset += i.num_nodes;
        }
        let ef = widths.first().copied().flatten().map(|k| (k, Arc::new(feats)));
        Ok(Graph::from_parts(offset, src, tgt, ef, graph_ptr))
    }

    /// The number of nodes.
    pub fn num_nodes(&self) -> usize {
        self.inner.num_nodes
    }

    /// The number of directed edges.
    pub fn num_edges(&self) -> usize {
        self.inner.src.len()
    }

    /// The number of graphs (1 for a graph not made by [`batch`](Self::batch)).
    pub fn num_graphs(&self) -> usize {
        self.inner.graph_ptr.len() - 1
    }

    /// The graph of the batch that node `node` belongs to (`None` out of range).
    pub fn graph_of(&self, node: usize) -> Option<usize> {
        if node >= self.num_nodes() {
            return None;
        }
        Some(self.inner.graph_ptr.partition_point(|&p| p <= node) - 1)
    }

    /// The nodes of graph `b` of the batch.
    pub fn nodes_of(&self, b: usize) -> std::ops::Range<usize> {
        self.inner.graph_ptr[b]..self.inner.graph_ptr[b + 1]
    }

    /// The edges `(source, target)` in order.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.inner.src.iter().copied().zip(self.inner.tgt.iter().copied())
    }

    /// The number of features per edge, if the graph has edge features.
    pub fn edge_feature_width(&self) -> Option<usize> {
        self.inner.edge_features.as_ref().map(|(k, _)| *k)
    }

    /// The edge features `[num_edges, k]`, row-major.
    pub fn edge_features(&self) -> Option<&[f64]> {
        self.inner.edge_features.as_ref().map(|(_, f)| f.as_slice())
    }

    /// The number of edges into each node.
    pub fn in_degree(&self, node: usize) -> usize {
        self.inner.in_ptr[node + 1] - self.inner.in_ptr[node]
    }

    /// `Err` unless a node axis of `rows` rows matches the graph.
    pub fn check_nodes(&self, rows: usize) -> Result<(), GraphError> {
        if rows != self.num_nodes() {
            return Err(GraphError::NodeCount { num_nodes: self.num_nodes(), rows });
        }
        Ok(())
    }

    /// The same graph with its nodes relabelled: node `i` becomes `perm[i]` (edges keep their
    /// order; one graph). `None` unless `perm` is a permutation of `0..num_nodes`.
    pub fn relabel(&self, perm: &[usize]) -> Option<Graph> {
        let n = self.num_nodes();
        let mut seen = vec![false; n];
        if perm.len() != n || perm.iter().any(|&p| p >= n || std::mem::replace(&mut seen[p], true)) {
            return None;
        }
        let i = &self.inner;
        Some(Graph::from_parts(
            n,
            i.src.iter().map(|&s| perm[s]).collect(),
            i.tgt.iter().map(|&t| perm[t]).collect(),
            i.edge_features.clone(),
            vec![0, n],
        ))
    }

    /// PyTorch Geometric's `gcn_norm` (with `add_remaining_self_loops`): self-loops of the
    /// graph are replaced by one self-loop of weight 1 per node, `d̂_i` = 1 + the number of
    /// other edges into `i`, and edge `j → i` weighs `d̂_j^-½ d̂_i^-½`.
    pub fn gcn_propagation(&self) -> &Propagation {
        self.inner.gcn.get_or_init(|| {
            let i = &self.inner;
            let deg: Vec<f64> = (0..i.num_nodes)
                .map(|v| 1.0 + i.in_edges[i.in_ptr[v]..i.in_ptr[v + 1]].iter().filter(|&&e| i.src[e] != v).count() as f64)
                .collect();
            let inv: Vec<f64> = deg.iter().map(|d| d.sqrt().recip()).collect();
            let edge = (0..i.src.len())
                .map(|e| if i.src[e] == i.tgt[e] { 0.0 } else { inv[i.src[e]] * inv[i.tgt[e]] })
                .collect();
            Propagation { edge: Arc::new(edge), self_loop: Some(Arc::new(deg.iter().map(|d| d.recip()).collect())) }
        })
    }

    /// Mean over incoming edges: edge `j → i` weighs `1 / in_degree(i)`.
    pub fn mean_propagation(&self) -> &Propagation {
        self.inner.mean.get_or_init(|| {
            let i = &self.inner;
            let edge = i.tgt.iter().map(|&t| 1.0 / (i.in_ptr[t + 1] - i.in_ptr[t]) as f64).collect();
            Propagation { edge: Arc::new(edge), self_loop: None }
        })
    }

    /// The pooling graph: edge `v` goes from node `v` to node `graph_of(v)`, over
    /// `max(num_nodes, num_graphs)` nodes (the first `num_graphs` rows of a scatter are the
    /// graphs).
    pub(crate) fn pool_graph(&self) -> &Graph {
        self.inner.pool.get_or_init(|| {
            let n = self.num_nodes();
            let m = n.max(self.num_graphs());
            let mut src = Vec::with_capacity(n);
            let mut tgt = Vec::with_capacity(n);
            for b in 0..self.num_graphs() {
                for v in self.nodes_of(b) {
                    src.push(v);
                    tgt.push(b);
                }
            }
            Graph::from_parts(m, src, tgt, None, vec![0, m])
        })
    }

    /// Every edge weighs 1.
    pub fn sum_propagation(&self) -> Propagation {
        Propagation { edge: Arc::new(vec![1.0; self.num_edges()]), self_loop: None }
    }
}

impl Propagation {
    /// Custom weights: one per edge, optionally one per node for `x[i]` itself. `Err` on a
    /// count mismatch or a non-finite weight.
    pub fn new(g: &Graph, edge: Vec<f64>, self_loop: Option<Vec<f64>>) -> Result<Propagation, GraphError> {
        if edge.len() != g.num_edges() {
            return Err(GraphError::EdgeFeatureCount { expected: g.num_edges(), given: edge.len() });
        }
        if let Some(s) = &self_loop {
            g.check_nodes(s.len())?;
        }
        if std::iter::once(&edge).chain(&self_loop).any(|w| crate::ops::floor::cpu::first_non_finite(w).is_some()) {
            return Err(GraphError::NotFinite("a propagation weight"));
        }
        Ok(Propagation { edge: Arc::new(edge), self_loop: self_loop.map(Arc::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_validates_and_builds_both_csrs() {
        assert_eq!(
            Graph::new(3, &[(0, 1), (1, 3)]).unwrap_err(),
            GraphError::NodeOutOfRange { edge: 1, node: 3, num_nodes: 3 }
        );
        let g = Graph::new(4, &[(0, 1), (2, 1), (1, 3), (3, 3)]).unwrap();
        assert_eq!(g.num_edges(), 4);
        assert_eq!(g.inner.in_ptr, vec![0, 0, 2, 2, 4]);
        assert_eq!(g.inner.in_edges, vec![0, 1, 2, 3]);
        assert_eq!(g.inner.out_ptr, vec![0, 1, 2, 3, 4]);
        assert_eq!(g.inner.out_edges, vec![0, 2, 1, 3]);
        assert_eq!(g.in_degree(1), 2);
        assert_eq!(g.num_graphs(), 1);
        assert!(g.check_nodes(5).is_err());
        let u = Graph::undirected(3, &[(0, 2)]).unwrap();
        assert_eq!(u.edges().collect::<Vec<_>>(), vec![(0, 2), (2, 0)]);
        assert!(matches!(Graph::undirected(2, &[(0, 1), (5, 1)]), Err(GraphError::NodeOutOfRange { edge: 1, .. })));
    }

    #[test]
    fn edge_features_are_counted() {
        let g = Graph::new(3, &[(0, 1), (1, 2)]).unwrap();
        assert!(g.clone().with_edge_features(2, &[1.0; 6]).is_err());
        assert!(g.clone().with_edge_features(0, &[]).is_err());
        assert!(g.clone().with_edge_features(1, &[1.0, f64::NAN]).is_err());
        let f = g.with_edge_features(2, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(f.edge_feature_width(), Some(2));
        assert_eq!(f.edge_features().unwrap()[3], 4.0);
    }

    #[test]
    fn batch_is_a_disjoint_union() {
        let a = Graph::new(2, &[(0, 1)]).unwrap();
        let b = Graph::new(3, &[(2, 0), (1, 2)]).unwrap();
        let g = Graph::batch(&[a.clone(), b.clone(), a.clone()]);
        assert_eq!(g.num_nodes(), 7);
        assert_eq!(g.num_graphs(), 3);
        assert_eq!(g.edges().collect::<Vec<_>>(), vec![(0, 1), (4, 2), (3, 4), (5, 6)]);
        assert_eq!((0..7).map(|v| g.graph_of(v).unwrap()).collect::<Vec<_>>(), vec![0, 0, 1, 1, 1, 2, 2]);
        assert_eq!(g.graph_of(7), None);
        let gg = Graph::batch(&[g.clone(), a.clone()]);
        assert_eq!(gg.num_graphs(), 4);
        let fa = a.clone().with_edge_features(1, &[5.0]).unwrap();
        assert_eq!(Graph::try_batch(&[fa.clone(), b.clone()]).unwrap_err(), GraphError::BatchEdgeFeatures);
        assert_eq!(Graph::batch(&[fa.clone(), b]).edge_feature_width(), None);
        assert_eq!(Graph::batch(&[fa.clone(), fa]).edge_features().unwrap(), &[5.0, 5.0]);
        let empty = Graph::batch(&[]);
        assert_eq!((empty.num_nodes(), empty.num_graphs()), (0, 0));
    }

    #[test]
    fn gcn_weights_follow_pyg() {
        // 0 → 1, 2 → 1, 1 → 1 (self-loop replaced): d̂ = [1, 3, 1].
        let g = Graph::new(3, &[(0, 1), (2, 1), (1, 1)]).unwrap();
        let p = g.gcn_propagation();
        let s3 = 3f64.sqrt().recip();
        assert_eq!(p.edge.as_slice(), &[s3, s3, 0.0]);
        assert_eq!(p.self_loop.as_ref().unwrap().as_slice(), &[1.0, 1.0 / 3.0, 1.0]);
    }
}
