//! A batch of molecules of different sizes through one `Graph::batch` in a `network!` graph
//! model gives, row by row, exactly what each molecule gives alone (DSL §6: a graph network
//! has no batch axis; after `graph_pool` one row per graph).

use typenet::graph::Graph;
use typenet::prelude::*;

network! {
    pub Molecules: (x: [n, 2], p: [n, 3], g: graph[n]) -> [2] {
        cfconv(4, rbf = 6, cutoff = 2.5, positions = p), tanh,
        gcn(3), relu,
        graph_pool(sum),
        dense(2),
    }
    pub Atoms: (pos: [n, 3], z: [n]) -> [1] {
        radial_basis(4, cutoff = 3.0),
        route(z) { { dense(1) }, { dense(2), tanh, dense(1) } },
        pool(sum),
    }
}

type Rows<const W: usize> = Tensor<(usize, Const<W>), f64, Cpu>;

/// A molecule: node features, positions, bonds (undirected).
struct Mol {
    x: Vec<f64>,
    p: Vec<f64>,
    bonds: Vec<(usize, usize)>,
}

impl Mol {
    fn n(&self) -> usize {
        self.p.len() / 3
    }
}

#[test]
fn a_batch_of_molecules_of_different_sizes_equals_each_alone() {
    let dev = Cpu::seed_from_u64(11);
    let model = Molecules::<f64, Cpu>::build(&dev);
    // Three molecules: 3, 5 and 2 atoms; a chain, a ring with a branch, a pair. Positions
    // about 1 apart along the bonds, some pairs beyond the cutoff.
    let mols = [
        Mol { x: vec![0.5, -1.0, 1.0, 0.0, -0.5, 2.0], p: vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.3, 0.0], bonds: vec![(0, 1), (1, 2)] },
        Mol {
            x: vec![1.0, 1.0, -1.0, 0.5, 0.2, 0.2, 0.0, -2.0, 1.5, 0.1],
            p: vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 2.8],
            bonds: vec![(0, 1), (1, 2), (2, 3), (3, 0), (2, 4)],
        },
        Mol { x: vec![-0.3, 0.7, 0.9, -0.9], p: vec![5.0, 5.0, 5.0, 5.0, 6.1, 5.0], bonds: vec![(0, 1)] },
    ];
    let graphs: Vec<Graph> = mols.iter().map(|m| Graph::undirected(m.n(), &m.bonds).unwrap()).collect();
    let alone: Vec<Vec<f64>> = mols
        .iter()
        .zip(&graphs)
        .map(|(m, g)| {
            let x: Rows<2> = dev.tensor_from_vec(m.x.clone(), (m.n(), Const));
            let p: Rows<3> = dev.tensor_from_vec(m.p.clone(), (m.n(), Const));
            let y = model.try_forward((x, p, g)).unwrap();
            assert_eq!(y.shape().concrete(), [1, 2]);
            y.as_vec()
        })
        .collect();

    let batch = Graph::batch(&graphs);
    let total: usize = mols.iter().map(Mol::n).sum();
    assert_eq!(batch.num_nodes(), total);
    let x: Rows<2> = dev.tensor_from_vec(mols.iter().flat_map(|m| m.x.clone()).collect(), (total, Const));
    let p: Rows<3> = dev.tensor_from_vec(mols.iter().flat_map(|m| m.p.clone()).collect(), (total, Const));
    let y = model.try_forward((x, p, &batch)).unwrap();
    assert_eq!(y.shape().concrete(), [3, 2]);
    let y = y.as_vec();
    for (k, row) in alone.iter().enumerate() {
        for (o, want) in row.iter().enumerate() {
            let got = y[k * 2 + o];
            assert!((got - want).abs() < 1e-10, "graph {k}, output {o}: batched {got}, alone {want}");
        }
    }
    // The rows differ between molecules (the check above is not trivially satisfied).
    assert!((alone[0][0] - alone[1][0]).abs() > 1e-6 && (alone[1][0] - alone[2][0]).abs() > 1e-6, "{alone:?}");
}

#[test]
fn route_runs_a_sample_without_one_of_its_species() {
    let dev = Cpu::seed_from_u64(12);
    let model = Atoms::<f64, Cpu>::build(&dev);
    let pos: Rows<3> = dev.tensor_from_vec(vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.2, 0.0], (3, Const));
    // Only species 0: branch 1 has no rows (dfdx's gather panicked on the empty index).
    let only0: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 0, 0], (3,));
    let e = model.try_forward((pos.clone(), only0)).unwrap().as_vec()[0];
    // The same as the sum of branch 0 over the radial descriptors.
    let g = typenet::layers::RadialBasis::<4>::new(3.0).forward(pos.clone());
    let want = model.dense_1.forward(g).sum::<Rank0, _>().array();
    assert!((e - want).abs() < 1e-12, "{e} vs {want}");
    let only1: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![1, 1, 1], (3,));
    let grads = model.try_forward((pos.clone().leaky_trace(), only1)).unwrap().sum::<Rank0, _>().backward();
    assert!(grads.get(&pos).as_vec().iter().all(|v| v.is_finite()));
}
