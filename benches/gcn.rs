//! The peers' `gcn_cora_sized_2708n_1433f_16h_7c` workload (`../shared/peers/bench_torch.py
//! --all`): Kipf & Welling's two-layer GCN on a Cora-sized random graph (2708 nodes, 5278
//! random undirected pairs = 10556 directed edges, plus self-loops), 1433 binary features (1.3%
//! ones), 16 hidden, 7 classes, dropout 0.5 (the `dropout` layer) on the input and the hidden layer, cross-entropy
//! over the first 140 nodes, Adam (lr 1e-3), f32, full batch — one training step. Built from
//! the runtime layers (`typenet::layers::Gcn`).
//!
//! Also: the aggregation throughput (edges/s) of `graph_conv`'s neighbour sum
//! (`ops::scatter::aggregate`, 16 features) on random graphs of 10⁵ and 10⁶ edges; compare
//! with `tools/graph_aggr_bench.py` (PyTorch's `index_add_`).
//!
//!     cargo bench --bench gcn
use criterion::{criterion_group, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use typenet::graph::Graph;
use typenet::layers::{Dropout, Gcn};
use typenet::ops::scatter::{aggregate, Aggr};
use typenet::prelude::*;

const N: usize = 2708;

fn bench(c: &mut Criterion) {
    let dev = Cpu::seed_from_u64(0);
    let mut rng = StdRng::seed_from_u64(0);
    let pairs: Vec<(usize, usize)> = (0..5278).map(|_| (rng.gen_range(0..N), rng.gen_range(0..N))).collect();
    let g = Graph::undirected(N, &pairs).unwrap();
    let xv: Vec<f32> = (0..N * 1433).map(|_| if rng.gen::<f32>() < 0.013 { 1.0 } else { 0.0 }).collect();
    let x: Tensor<(usize, Const<1433>), f32, Cpu> = dev.tensor_from_vec(xv, (N, Const));
    let labels: Vec<f32> = (0..140).flat_map(|_| {
        let k = rng.gen_range(0..7);
        (0..7).map(move |c| if c == k { 1.0 } else { 0.0 })
    }).collect();
    let y: Tensor<(usize, Const<7>), f32, Cpu> = dev.tensor_from_vec(labels, (140, Const));

    let mut model = (Gcn::<1433, 16, f32, Cpu>::build(&dev), Gcn::<16, 7, f32, Cpu>::build(&dev));
    let mut opt = Adam::new(&model, AdamConfig { lr: 1e-3, ..Default::default() });
    let mut grads = model.alloc_grads();
    let mut drop = Dropout { p: 0.5 };
    let mut group = c.benchmark_group("gcn_cora_sized_2708n_1433f_16h_7c");
    group.sample_size(30);
    group.bench_function("typenet train step", |b| {
        b.iter(|| {
            model.zero_grads(&mut grads);
            let h = drop.forward_mut(x.clone().trace(grads.clone()));
            let h = drop.forward_mut(model.0.try_forward((h, &g)).unwrap().relu());
            let out = model.1.try_forward((h, &g)).unwrap();
            let logits = out.slice((..140, ..)).realize::<(usize, Const<7>)>();
            let loss = cross_entropy_with_logits_loss(logits, y.clone());
            grads = loss.backward();
            opt.update(&mut model, &grads).unwrap();
        })
    });
    group.finish();

    let mut group = c.benchmark_group("graph_conv_aggregation_sum_16f");
    group.sample_size(20);
    for edges in [100_000usize, 1_000_000] {
        let n = edges / 10;
        let e: Vec<(usize, usize)> = (0..edges).map(|_| (rng.gen_range(0..n), rng.gen_range(0..n))).collect();
        let g = Graph::new(n, &e).unwrap();
        let x: Tensor<(usize, Const<16>), f32, Cpu> = dev.sample_normal_like(&(n, Const));
        group.throughput(Throughput::Elements(edges as u64));
        group.bench_function(format!("{edges} edges"), |b| b.iter(|| aggregate(x.clone(), &g, Aggr::Sum).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
