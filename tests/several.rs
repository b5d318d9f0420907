//! Several inputs and outputs through `network!` (DSL §6): forward shapes, the tape on a
//! branch that starts from another input and on every output, run-time axes that disagree.

use typenet::graph::Graph;
use typenet::layers::NetworkError;
use typenet::prelude::*;

network! {
    pub Fusion: (image: [1, 6, 6], meta: [3]) -> [2] {
        conv2d(2, kernel = 3), relu, global_avg_pool,
        concat { {}, { meta, dense(4), relu } },
        dense(2),
    }
    pub Encoder: [6] -> (mean: [2], log_var: [3]) {
        dense(4), relu,
        heads { mean: { dense(2) }, log_var: { dense(3) } },
    }
    pub Atoms: (pos: [n, 3], z: [n]) -> [1] {
        radial_basis(4, cutoff = 3.0),
        route(z) { { dense(1) }, { dense(2), tanh, dense(1) } },
        pool(sum),
    }
    pub Tiny: (x: [n, 3], g: graph[n]) -> [n, 2] { gcn(4), relu, gcn(2) }
    pub Pooled: (x: [n, 3], g: graph[n]) -> [2] { gcn(4), graph_pool(mean), dense(2) }
    pub Mp: (x: [n, 2], g: graph[n, 1]) -> [n, 3] { message_passing(aggr = sum) { dense(3), tanh } }
    pub Cf: (x: [n, 2], p: [n, 3]) -> [n, 3] { cfconv(3, rbf = 6, cutoff = 2.5, positions = p) }
    pub CfGraph: (x: [n, 2], p: [n, 3], g: graph[n]) -> [n, 3] { cfconv(3, rbf = 6, cutoff = 2.5, positions = p) }
    pub Drops: [t, 4] -> [t, 4] { transformer(heads = 2, ff = 8, dropout = 0), attention(heads = 2, dropout = 0.25), transformer(heads = 2, ff = 8) }
    pub Lm: [t] -> [t, 5] { embedding(5, 4), positional(max = 8), transformer(heads = 2, ff = 8, causal = true), dense(5) }
    // Networks whose layers check their input at run time, used as layers: from another
    // invocation, and from this one by a network that is itself used as a layer.
    pub Mixed: [t, 4] -> [t, 2] { blocks::Mixer, dense(2) }
    pub Twice: [t, 4] -> [t, 2] { Inner, Mixed }
    pub Inner: [t, 4] -> [t, 4] { attention(heads = 2, dropout = 0) }
}

mod blocks {
    use typenet::prelude::*;

    network! {
        pub Mixer: [t, 4] -> [t, 4] { positional(max = 4), transformer(heads = 2, ff = 8, dropout = 0) }
    }
}

#[test]
fn forward_shapes_batched_and_not() {
    let dev = Cpu::seed_from_u64(0);
    let f = Fusion::<f64, Cpu>::build(&dev);
    let img: Tensor<(usize, Const<1>, Const<6>, Const<6>), f64, Cpu> = dev.sample_normal_like(&(3, Const, Const, Const));
    let meta: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(3, Const));
    assert_eq!(f.forward((img, meta)).shape().concrete(), [3, 2]);
    let y: Tensor<Rank1<2>, f64, Cpu> = f.forward((dev.sample_normal::<Rank3<1, 6, 6>>(), dev.sample_normal::<Rank1<3>>()));
    assert!(y.as_vec().iter().all(|v| v.is_finite()));

    let lm = Lm::<f32, Cpu>::build(&dev);
    let tokens: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 4], (3,));
    assert_eq!(lm.forward(tokens).shape().concrete(), [3, 5]);

    let t = Tiny::<f32, Cpu>::build(&dev);
    let g = Graph::undirected(4, &[(0, 1), (1, 2)]).unwrap();
    let x: Tensor<(usize, Const<3>), f32, Cpu> = dev.sample_normal_like(&(4, Const));
    assert_eq!(t.forward((x, &g)).shape().concrete(), [4, 2]);

    // After `graph_pool`, one row per graph of the batch.
    let p = Pooled::<f32, Cpu>::build(&dev);
    let b = Graph::batch(&[Graph::undirected(2, &[(0, 1)]).unwrap(), Graph::undirected(3, &[(1, 2)]).unwrap()]);
    let x: Tensor<(usize, Const<3>), f32, Cpu> = dev.sample_normal_like(&(5, Const));
    let y: Tensor<(usize, Const<2>), f32, Cpu> = p.forward((x, &b));
    assert_eq!(y.shape().concrete(), [2, 2]);
}

#[test]
fn a_branch_from_another_input_trains() {
    let dev = Cpu::seed_from_u64(1);
    let f = Fusion::<f64, Cpu>::build(&dev);
    let img: Tensor<Rank3<1, 6, 6>, f64, Cpu> = dev.sample_normal();
    let meta: Tensor<Rank1<3>, f64, Cpu> = dev.sample_normal();
    let g = f.forward((img.traced(f.alloc_grads()), meta)).sum().backward();
    // Both the image path and the branch on `meta` receive gradients.
    assert!(g.get(&f.conv2d_1.weight).as_vec().iter().any(|v| *v != 0.0));
    assert!(g.get(&f.dense_1.weight).as_vec().iter().any(|v| *v != 0.0));
}

#[test]
fn every_output_carries_the_tape() {
    let dev = Cpu::seed_from_u64(2);
    let e = Encoder::<f64, Cpu>::build(&dev);
    let x: Tensor<Rank1<6>, f64, Cpu> = dev.sample_normal();
    // A loss of one head alone: the trunk and that head train, the other head does not.
    let (_, log_var) = e.forward(x.clone().traced(e.alloc_grads()));
    let g = log_var.sum().backward();
    assert!(g.get(&e.dense_1.weight).as_vec().iter().any(|v| *v != 0.0));
    assert!(g.get(&e.dense_3.weight).as_vec().iter().any(|v| *v != 0.0));
    assert!(g.get(&e.dense_2.weight).as_vec().iter().all(|v| *v == 0.0));
    // Both heads, in either order, give the same gradients: the trunk's is the sum of both.
    let (m, l) = e.forward(x.clone().traced(e.alloc_grads()));
    let ab = (m.sum() + l.sum()).backward();
    let (m, l) = e.forward(x.clone().traced(e.alloc_grads()));
    let ba = (l.sum() + m.sum()).backward();
    let (m, _) = e.forward(x.clone().traced(e.alloc_grads()));
    let only_mean = m.sum().backward();
    for (a, b) in ab.get(&e.dense_1.weight).as_vec().iter().zip(ba.get(&e.dense_1.weight).as_vec()) {
        assert!((a - b).abs() < 1e-12);
    }
    let trunk: Vec<f64> = g.get(&e.dense_1.weight).as_vec().iter().zip(only_mean.get(&e.dense_1.weight).as_vec()).map(|(a, b)| a + b).collect();
    for (a, b) in ab.get(&e.dense_1.weight).as_vec().iter().zip(trunk) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}

#[test]
fn run_time_axes_that_disagree_are_errors() {
    let dev = Cpu::seed_from_u64(3);
    let a = Atoms::<f64, Cpu>::build(&dev);
    let pos: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(5, Const));
    let z: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 1, 0], (4,));
    let e: NetworkError = a.try_forward((pos.clone(), z)).unwrap_err();
    assert!(e.to_string().contains("`pos` has 5 and `z` has 4"), "{e}");
    // An index with no branch is an error too, not a panic.
    let z: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 2, 0, 1], (5,));
    assert!(a.try_forward((pos.clone(), z)).is_err());
    let z: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 1, 0, 1], (5,));
    assert!(a.try_forward((pos, z)).unwrap().as_vec()[0].is_finite());

    let t = Tiny::<f32, Cpu>::build(&dev);
    let g = Graph::undirected(3, &[(0, 1)]).unwrap();
    let x: Tensor<(usize, Const<3>), f32, Cpu> = dev.sample_normal_like(&(4, Const));
    let e = t.try_forward((x, &g)).unwrap_err();
    assert!(e.to_string().contains("`x` has 4 and `g` has 3"), "{e}");

    let f = Fusion::<f32, Cpu>::build(&dev);
    let img: Tensor<(usize, Const<1>, Const<6>, Const<6>), f32, Cpu> = dev.sample_normal_like(&(3, Const, Const, Const));
    let meta: Tensor<(usize, Const<3>), f32, Cpu> = dev.sample_normal_like(&(2, Const));
    assert!(f.try_forward((img, meta)).unwrap_err().to_string().contains("batch"));
}

#[test]
fn message_passing_runs_its_block_on_target_source_and_edge_features() {
    let dev = Cpu::seed_from_u64(0);
    let mut m = Mp::<f64, Cpu>::build(&dev);
    // W [3, 5] over [x_i (2), x_j (2), e_ij (1)], b [3].
    let w = [[1.0, 0.0, 0.5, 0.0, 2.0], [0.0, -1.0, 0.0, 1.0, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2]];
    let b = [0.1, 0.0, -0.1];
    m.dense_1.weight = dev.tensor(w);
    m.dense_1.bias = dev.tensor(b);
    // Edges 0 → 1 (feature 0.5) and 2 → 1 (feature −1); node 0 and 2 receive nothing.
    let g = Graph::new(3, &[(0, 1), (2, 1)]).unwrap().with_edge_features(1, &[0.5, -1.0]).unwrap();
    let xs = [[1.0, 2.0], [0.5, -0.5], [-1.0, 3.0]];
    let x: Tensor<(usize, Const<2>), f64, Cpu> = dev.tensor_from_vec(xs.concat(), (3, Const));
    let y = m.try_forward((x.clone(), &g)).unwrap().as_vec();
    let msg = |i: usize, j: usize, e: f64| -> Vec<f64> {
        let v = [xs[i][0], xs[i][1], xs[j][0], xs[j][1], e];
        (0..3).map(|o| (b[o] + (0..5).map(|k| w[o][k] * v[k]).sum::<f64>()).tanh()).collect()
    };
    let (a, c) = (msg(1, 0, 0.5), msg(1, 2, -1.0));
    let want = [0.0, 0.0, 0.0, a[0] + c[0], a[1] + c[1], a[2] + c[2], 0.0, 0.0, 0.0];
    for (k, (u, v)) in y.iter().zip(want).enumerate() {
        assert!((u - v).abs() < 1e-12, "y[{k}] = {u}, want {v}");
    }
    // A graph without the declared edge feature is an Err, not a panic.
    let plain = Graph::new(3, &[(0, 1)]).unwrap();
    assert!(m.try_forward((x.clone(), &plain)).is_err());
    // The block trains: its weight gets a gradient through the aggregation.
    let grads = m.alloc_grads();
    let loss = m.try_forward_mut((x.traced(grads), &g)).unwrap().square().sum();
    let grads = loss.backward();
    assert!(grads.get(&m.dense_1.weight).as_vec().iter().any(|v| v.abs() > 1e-6));
}

#[test]
fn cfconv_takes_its_positions_input_and_the_declared_cutoff() {
    let dev = Cpu::seed_from_u64(0);
    let m = Cf::<f64, Cpu>::build(&dev);
    // The declared cutoff, not the runtime default, in the built layer.
    assert_eq!(m.cfconv_1.cutoff, 2.5);
    let x: Tensor<(usize, Const<2>), f64, Cpu> = dev.sample_normal_like(&(4, Const));
    let pv = vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.2, 0.0, 3.0, 3.0, 3.0];
    let p: Tensor<(usize, Const<3>), f64, Cpu> = dev.tensor_from_vec(pv.clone(), (4, Const));
    let y = m.try_forward((x.clone(), p.clone())).unwrap().as_vec();
    // The same layer run directly: every other point is a neighbour.
    let direct = m.cfconv_1.try_forward((x.clone(), p.clone())).unwrap().as_vec();
    assert_eq!(y, direct);
    // The same with a complete graph input.
    let edges: Vec<(usize, usize)> = (0..4).flat_map(|i| (0..4).filter(move |&j| j != i).map(move |j| (j, i))).collect();
    let g = Graph::new(4, &edges).unwrap();
    let mut mg = CfGraph::<f64, Cpu>::build(&dev);
    mg.cfconv_1 = m.cfconv_1.clone();
    let yg = mg.try_forward((x.clone(), p.clone(), &g)).unwrap().as_vec();
    for (a, b) in y.iter().zip(&yg) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // The last point is beyond the cutoff of all others: only its own lin2 bias remains.
    let bias = m.cfconv_1.lin2.bias.as_vec();
    for o in 0..3 {
        assert!((y[9 + o] - bias[o]).abs() < 1e-12);
    }
    // Gradients reach the positions (forces; a leaky gradient set keeps those of inputs):
    // moving point 1 changes the output.
    let loss = m.try_forward((x.clone().traced(Gradients::leaky()), p.clone())).unwrap().square().sum();
    let grads = loss.backward();
    let gp = grads.get(&p).as_vec();
    assert!(gp[3..6].iter().any(|v| v.abs() > 1e-9), "{gp:?}");
    // A node axis that is not the graph's is an Err.
    let small = Graph::new(3, &[(0, 1)]).unwrap();
    assert!(mg.try_forward((x, p, &small)).is_err());
}

#[test]
fn declared_dropout_is_set_on_attention_layers() {
    let m = Drops::<f32, Cpu>::build(&Cpu::default());
    assert_eq!((m.transformer_1.dropout, m.transformer_1.self_attn.dropout), (0.0, 0.0));
    assert_eq!(m.attention_1.dropout, 0.25);
    // PyTorch's default where none is declared.
    assert_eq!((m.transformer_2.dropout, m.transformer_2.self_attn.dropout), (0.1, 0.1));
}

#[test]
fn networks_that_check_their_input_compose() {
    let dev = Cpu::seed_from_u64(5);
    let m = Mixed::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<4>), f64, Cpu> = dev.sample_normal_like(&(3, Const));
    let y: Result<_, NetworkError> = m.try_forward(x.clone());
    let direct = m.dense_1.forward(m.mixer_1.try_forward(x.clone()).unwrap());
    assert_eq!(y.unwrap().as_vec(), direct.as_vec());
    // The sub-network's run-time check is the caller's `Err`: 5 steps, `positional(max = 4)`.
    let long: Tensor<(usize, Const<4>), f64, Cpu> = dev.sample_normal_like(&(5, Const));
    assert!(m.try_forward(long.clone()).is_err());
    let t = Twice::<f64, Cpu>::build(&dev);
    assert!(t.try_forward(long).is_err());
    let xb: Tensor<(usize, usize, Const<4>), f64, Cpu> = dev.sample_normal_like(&(2, 3, Const));
    assert_eq!(t.try_forward(xb).unwrap().shape().concrete(), [2, 3, 2]);
}
