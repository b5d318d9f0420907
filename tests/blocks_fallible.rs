//! Layers that check their input at run time (attention, graph layers, `cfconv`, `embedding`)
//! inside blocks (`residual`, `residual(project)`, `concat`, `sum`, `each`): they compile,
//! compute what the block says, train (gradients reach the layers inside), and their run-time
//! errors come out of the network as `NetworkError`.

use typenet::graph::Graph;
use typenet::layers::NetworkError;
use typenet::prelude::*;

network! {
    pub PreNorm: [t, 8] -> [t, 8] {
        residual { layer_norm, attention(heads = 2) },
        residual { layer_norm, dense(16), relu, dense(8) },
    }
    pub GraphBlocks: (x: [n, 4], g: graph[n]) -> [n, 3] {
        residual { gcn(4), relu },
        concat { { gcn(2) }, { dense(2) } },
        sum { { gcn(4), tanh }, { dense(4) } },
        residual(project) { gcn(3) },
    }
    pub CfRes: (x: [n, 3], p: [n, 3]) -> [n, 3] {
        residual { cfconv(3, rbf = 6, cutoff = 2.5, positions = p), tanh },
    }
    pub PerSet: [s, t, 4] -> [s, t, 4] { each { attention(heads = 2) } }
    /// An empty branch (the identity) beside a fallible one, in either order.
    pub EmptyBranch: [t, 4] -> [t, 8] { sum { { attention(heads = 2) }, {} }, concat { {}, { attention(heads = 2) } } }
    pub Tokens: [t] -> [t, 6] { embedding(5, 4), residual { layer_norm, attention(heads = 2) }, concat { { attention(heads = 2) }, { dense(2) } } }
}

#[test]
fn residual_adds_the_attention_block_to_its_input() {
    let dev = Cpu::seed_from_u64(1);
    let m = PreNorm::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<8>), f64, Cpu> = dev.sample_normal_like(&(5, Const));
    let y = m.forward(x.clone());
    // The first residual by hand: x + attention(layer_norm(x)), then the second.
    let h = x.clone() + m.attention_1.try_forward(m.layer_norm_1.forward(x.clone())).unwrap();
    let f = m.dense_2.forward(m.dense_1.forward(m.layer_norm_2.forward(h.clone())).relu());
    let want = (h + f).as_vec();
    let got = y.as_vec();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // Batched, and training: the attention inside the residual gets its gradients.
    let mut m = m;
    let xb: Tensor<(usize, usize, Const<8>), f64, Cpu> = dev.sample_normal_like(&(2, 5, Const));
    let g = m.alloc_grads();
    let y = m.forward_mut(xb.trace(g));
    let g = y.square().sum().backward();
    let gq = g.get(&m.attention_1.in_proj_weight).as_vec();
    assert!(gq.iter().any(|v| *v != 0.0), "the attention inside `residual` trains");
}

#[test]
fn graph_layers_inside_residual_concat_and_sum() {
    let dev = Cpu::seed_from_u64(2);
    let mut m = GraphBlocks::<f32, Cpu>::build(&dev);
    let g = Graph::undirected(4, &[(0, 1), (1, 2), (2, 3)]).unwrap();
    let x: Tensor<(usize, Const<4>), f32, Cpu> = dev.sample_normal_like(&(4, Const));
    let y: Tensor<(usize, Const<3>), f32, Cpu> = m.forward((x.clone(), &g));
    assert_eq!(y.shape().concrete(), [4, 3]);
    // The first residual by hand.
    let h = x.clone() + m.gcn_1.try_forward((x.clone(), &g)).unwrap().relu();
    let c = m.gcn_2.try_forward((h.clone(), &g)).unwrap().as_vec();
    let d = m.dense_1.forward(h.clone()).as_vec();
    let mut joined = Vec::new();
    for r in 0..4 {
        joined.extend_from_slice(&c[r * 2..r * 2 + 2]);
        joined.extend_from_slice(&d[r * 2..r * 2 + 2]);
    }
    let joined: Tensor<(usize, Const<4>), f32, Cpu> = dev.tensor_from_vec(joined, (4, Const));
    let s = m.gcn_3.try_forward((joined.clone(), &g)).unwrap().tanh() + m.dense_2.forward(joined.clone());
    let want = m.gcn_4.try_forward((s.clone(), &g)).unwrap() + m.residual_2.forward(s);
    for (a, b) in y.as_vec().iter().zip(&want.as_vec()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // Every gcn inside a block trains.
    let grads = m.alloc_grads();
    let y = m.forward_mut((x.clone().trace(grads), &g));
    let grads = y.square().sum().backward();
    let trains = |v: Vec<f32>| v.iter().any(|v| *v != 0.0);
    assert!(trains(grads.get(&m.gcn_1.weight).as_vec()));
    assert!(trains(grads.get(&m.gcn_2.weight).as_vec()));
    assert!(trains(grads.get(&m.gcn_3.weight).as_vec()));
    assert!(trains(grads.get(&m.gcn_4.weight).as_vec()));
    // A graph over another number of nodes: the error of the layer inside the block.
    let small = Graph::undirected(3, &[(0, 1)]).unwrap();
    let e: NetworkError = m.try_forward((x, &small)).unwrap_err();
    assert!(e.to_string().contains('3') && e.to_string().contains('4'), "{e}");
}

#[test]
fn cfconv_inside_residual() {
    let dev = Cpu::seed_from_u64(3);
    let m = CfRes::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(4, Const));
    let p: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(4, Const));
    let y = m.forward((x.clone(), p.clone()));
    let want = x.clone() + m.cfconv_1.try_forward((x.clone(), p.clone())).unwrap().tanh();
    for (a, b) in y.as_vec().iter().zip(&want.as_vec()) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    let short: Tensor<(usize, Const<3>), f64, Cpu> = dev.sample_normal_like(&(3, Const));
    assert!(m.try_forward((x, short)).is_err());
}

#[test]
fn attention_inside_each_and_after_an_embedding() {
    let dev = Cpu::seed_from_u64(4);
    let m = PerSet::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, usize, Const<4>), f64, Cpu> = dev.sample_normal_like(&(3, 5, Const));
    let y = m.forward(x.clone());
    assert_eq!(y.shape().concrete(), [3, 5, 4]);
    let v = x.as_vec();
    let second: Tensor<(usize, Const<4>), f64, Cpu> = dev.tensor_from_vec(v[20..40].to_vec(), (5, Const));
    let want = m.attention_1.try_forward(second).unwrap().as_vec();
    for (a, b) in y.as_vec()[20..40].iter().zip(&want) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    let t = Tokens::<f32, Cpu>::build(&dev);
    let ids: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 2, 3, 4], (5,));
    let y = t.forward(ids);
    assert_eq!(y.shape().concrete(), [5, 6]);
    let ids: Tensor<(usize, usize), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 2, 3, 4, 0], (2, 3));
    assert_eq!(t.forward(ids).shape().concrete(), [2, 3, 6]);
    // An index out of range is the embedding's error, out of the network.
    let bad: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 9], (3,));
    let e: NetworkError = t.try_forward(bad).unwrap_err();
    assert!(e.to_string().contains('9'), "{e}");
}

#[test]
fn an_empty_branch_beside_a_fallible_one() {
    let dev = Cpu::seed_from_u64(5);
    let m = EmptyBranch::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<4>), f64, Cpu> = dev.sample_normal_like(&(3, Const));
    let y = m.try_forward(x.clone()).unwrap();
    let h = m.attention_1.try_forward(x.clone()).unwrap() + x;
    let a = m.attention_2.try_forward(h.clone()).unwrap();
    let (hv, av, yv) = (h.as_vec(), a.as_vec(), y.as_vec());
    for r in 0..3 {
        for c in 0..8 {
            let want = if c < 4 { hv[r * 4 + c] } else { av[r * 4 + c - 4] };
            assert!((yv[r * 8 + c] - want).abs() < 1e-12, "row {r} col {c}");
        }
    }
}
