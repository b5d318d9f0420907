//! Properties of the graph layers (proptest, few cases): equivariance to relabelling the
//! nodes, invariance of `graph_pool`, rotation/translation invariance of `cfconv`, a batch of
//! graphs equal to the graphs one by one; and the errors of `route` and of mismatched graphs.

use proptest::prelude::*;
use typenet::dfdx::prelude::*;
use typenet::graph::{Graph, GraphError};
use typenet::layers::*;

type X<const W: usize> = Tensor<(usize, Const<W>), f64, Cpu>;

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-9 * (1.0 + x.abs()), "{x} vs {y}");
    }
}

fn permute_rows(v: &[f64], w: usize, perm: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; v.len()];
    for (i, &p) in perm.iter().enumerate() {
        out[p * w..(p + 1) * w].copy_from_slice(&v[i * w..(i + 1) * w]);
    }
    out
}

/// Nodes, edges, edge weights, node labels.
type ArbGraph = (usize, Vec<(usize, usize)>, Vec<f64>, Vec<usize>);

fn arb_graph() -> impl Strategy<Value = ArbGraph> {
    (2usize..7).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec((0..n, 0..n), 0..12),
            prop::collection::vec(-2.0f64..2.0, n * 3),
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
        )
    })
}

type Mp = MessagePassing<6, (Dense<6, 4, f64, Cpu>, typenet::layers::Tanh), MaxAggr>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn layers_are_equivariant_to_relabelling((n, edges, xv, perm) in arb_graph()) {
        let dev = Cpu::seed_from_u64(1);
        let g = Graph::new(n, &edges).unwrap();
        let gp = g.relabel(&perm).unwrap();
        let x: X<3> = dev.tensor_from_vec(xv.clone(), (n, Const));
        let xp: X<3> = dev.tensor_from_vec(permute_rows(&xv, 3, &perm), (n, Const));
        let gcn = Gcn::<3, 2, f64, Cpu>::build(&dev);
        close(&permute_rows(&gcn.try_forward((x.clone(), &g)).unwrap().as_vec(), 2, &perm), &gcn.try_forward((xp.clone(), &gp)).unwrap().as_vec());
        let gc = GraphConv::<3, 2, MaxAggr, f64, Cpu>::build(&dev);
        close(&permute_rows(&gc.try_forward((x.clone(), &g)).unwrap().as_vec(), 2, &perm), &gc.try_forward((xp.clone(), &gp)).unwrap().as_vec());
        let gm = GraphConv::<3, 2, MeanAggr, f64, Cpu>::build(&dev);
        close(&permute_rows(&gm.try_forward((x.clone(), &g)).unwrap().as_vec(), 2, &perm), &gm.try_forward((xp.clone(), &gp)).unwrap().as_vec());
        let mp = Mp::build(&dev);
        close(&permute_rows(&mp.try_forward((x.clone(), &g)).unwrap().as_vec(), 4, &perm), &mp.try_forward((xp.clone(), &gp)).unwrap().as_vec());
        let cf = CfConv::<3, 2, 4, f64, Cpu>::build(&dev).with_cutoff(2.5).unwrap();
        let no_loops: Vec<(usize, usize)> = edges.iter().copied().filter(|(a, b)| a != b).collect();
        let g2 = Graph::new(n, &no_loops).unwrap();
        let g2p = g2.relabel(&perm).unwrap();
        close(&permute_rows(&cf.try_forward((x.clone(), x.clone(), &g2)).unwrap().as_vec(), 2, &perm), &cf.try_forward((xp.clone(), xp.clone(), &g2p)).unwrap().as_vec());
        // graph_pool: invariant
        {
            let v = GraphPool::<SumAggr>::default().try_forward((x.clone(), &g)).unwrap().as_vec();
            close(&v, &GraphPool::<SumAggr>::default().try_forward((xp.clone(), &gp)).unwrap().as_vec());
        }
        close(&GraphPool::<MaxAggr>::default().try_forward((x.clone(), &g)).unwrap().as_vec(), &GraphPool::<MaxAggr>::default().try_forward((xp, &gp)).unwrap().as_vec());
    }

    #[test]
    fn a_batch_equals_its_graphs_one_by_one((n, edges, xv, _perm) in arb_graph(), (m, edges2, xv2, _p2) in arb_graph()) {
        let dev = Cpu::seed_from_u64(2);
        let (a, b) = (Graph::new(n, &edges).unwrap(), Graph::new(m, &edges2).unwrap());
        let batch = Graph::batch(&[a.clone(), b.clone()]);
        let xa: X<3> = dev.tensor_from_vec(xv.clone(), (n, Const));
        let xb: X<3> = dev.tensor_from_vec(xv2.clone(), (m, Const));
        let xab: X<3> = dev.tensor_from_vec([xv, xv2].concat(), (n + m, Const));
        let gcn = Gcn::<3, 2, f64, Cpu>::build(&dev);
        let one = [gcn.try_forward((xa.clone(), &a)).unwrap().as_vec(), gcn.try_forward((xb.clone(), &b)).unwrap().as_vec()].concat();
        close(&one, &gcn.try_forward((xab.clone(), &batch)).unwrap().as_vec());
        let mp = Mp::build(&dev);
        let one = [mp.try_forward((xa.clone(), &a)).unwrap().as_vec(), mp.try_forward((xb.clone(), &b)).unwrap().as_vec()].concat();
        close(&one, &mp.try_forward((xab.clone(), &batch)).unwrap().as_vec());
        let pool = GraphPool::<MeanAggr>::default();
        let one = [pool.try_forward((xa, &a)).unwrap().as_vec(), pool.try_forward((xb, &b)).unwrap().as_vec()].concat();
        close(&one, &pool.try_forward((xab, &batch)).unwrap().as_vec());
    }

    #[test]
    fn cfconv_is_invariant_to_rotation_and_translation(pos in prop::collection::vec(-1.5f64..1.5, 15), angle in 0.0f64..std::f64::consts::TAU, shift in prop::collection::vec(-3.0f64..3.0, 3)) {
        let dev = Cpu::seed_from_u64(3);
        let n = 5;
        let cf = CfConv::<2, 3, 6, f64, Cpu>::build(&dev).with_cutoff(2.0).unwrap();
        let x: X<2> = dev.sample_normal_like(&(n, Const));
        let (c, s) = (angle.cos(), angle.sin());
        let moved: Vec<f64> = pos.chunks(3).flat_map(|p| [c * p[0] - s * p[1] + shift[0], s * p[0] + c * p[1] + shift[1], p[2] + shift[2]]).collect();
        let p0: X<3> = dev.tensor_from_vec(pos, (n, Const));
        let p1: X<3> = dev.tensor_from_vec(moved, (n, Const));
        close(&cf.try_forward((x.clone(), p0)).unwrap().as_vec(), &cf.try_forward((x, p1)).unwrap().as_vec());
    }
}

#[test]
fn route_sends_each_row_to_its_species_branch_and_checks_the_species() {
    let dev = Cpu::seed_from_u64(4);
    let r = Route::<(Dense<2, 3, f64, Cpu>, Dense<2, 3, f64, Cpu>)>::build(&dev);
    let x: X<2> = dev.sample_normal_like(&(4, Const));
    let z = [1usize, 0, 1, 1];
    let y = r.try_forward((x.clone(), &z[..])).unwrap().as_vec();
    let y0 = r.0 .0.forward(x.clone()).as_vec();
    let y1 = r.0 .1.forward(x.clone()).as_vec();
    for (i, &s) in z.iter().enumerate() {
        let want = if s == 0 { &y0 } else { &y1 };
        close(&y[i * 3..i * 3 + 3], &want[i * 3..i * 3 + 3]);
    }
    let g = r.clone().try_forward_mut((x.leaky_trace(), &z[..])).unwrap().sum().backward();
    assert!(g.get(&x).as_vec().iter().all(|v| v.is_finite() && *v != 0.0));
    assert_eq!(r.try_forward((x.clone(), &[0usize, 2, 0, 0][..])).unwrap_err(), GraphError::IndexOutOfRange { index: 1, value: 2, bound: 2 });
    assert!(r.try_forward((x, &[0usize, 1][..])).is_err());
}

#[test]
fn a_node_axis_that_is_not_the_graphs_is_an_err() {
    let dev = Cpu::default();
    let g = Graph::new(3, &[(0, 1)]).unwrap();
    let x: X<2> = dev.zeros_like(&(4, Const));
    assert_eq!(Gcn::<2, 2, f64, Cpu>::build(&dev).try_forward((x.clone(), &g)).unwrap_err(), GraphError::NodeCount { num_nodes: 3, rows: 4 });
    assert!(GraphConv::<2, 2, SumAggr, f64, Cpu>::build(&dev).try_forward((x.clone(), &g)).is_err());
    assert!(GraphPool::<SumAggr>::default().try_forward((x.clone(), &g)).is_err());
    // message_passing with edge features the graph lacks
    let mp = MessagePassing::<6, (Dense<6, 2, f64, Cpu>,), SumAggr>::build(&dev);
    let x3: X<2> = dev.zeros_like(&(3, Const));
    assert_eq!(mp.try_forward((x3, &g)).unwrap_err(), GraphError::EdgeFeatureWidth { expected: 2, given: None });
}
