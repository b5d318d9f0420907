//! Agreement with PyTorch Geometric's `GCNConv`, `GraphConv` (sum, mean, max) and a
//! `MessagePassing` network (outputs and gradients, float64, to 1e-5), using the fixtures
//! written by `tools/graph_fixtures.py`.

use ::safetensors::SafeTensors;
use typenet::dfdx::prelude::*;
use typenet::graph::Graph;
use typenet::layers::*;

const N: usize = 6;
const F: usize = 3;
const O: usize = 4;
const E: usize = 9;
const K: usize = 2;

fn fixtures() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/graph.safetensors")).unwrap()
}

fn assert_close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "{what}: max |typenet − PyG| = {worst:e}");
}

fn load<S: ConstShape>(st: &SafeTensors, key: &str) -> Tensor<S, f64, Cpu> {
    let mut t: Tensor<S, f64, Cpu> = Cpu::default().zeros();
    t.load_safetensor(st, key).unwrap();
    t
}

fn graph(st: &SafeTensors) -> Graph {
    let e = load::<Rank2<E, 2>>(st, "graph.edges").as_vec();
    let edges: Vec<(usize, usize)> = e.chunks(2).map(|p| (p[0] as usize, p[1] as usize)).collect();
    let attr = load::<Rank2<E, K>>(st, "graph.edge_attr").as_vec();
    Graph::new(N, &edges).unwrap().with_edge_features(K, &attr).unwrap()
}

macro_rules! torch_case {
    ($test:ident, $name:literal, $ty:ty, [$(($($field:tt).+, $key:literal, $shape:ty)),*], $edge:expr) => {
        #[test]
        fn $test() {
            let bytes = fixtures();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let dev = Cpu::default();
            let g = graph(&st);
            let mut m = <$ty>::build(&dev);
            $( m.$($field).+ = load::<$shape>(&st, concat!($name, ".", $key)); )*
            let x = load::<Rank2<N, F>>(&st, concat!($name, ".x")).realize::<(usize, Const<F>)>();
            let y_ref = load::<Rank2<N, O>>(&st, concat!($name, ".y")).as_vec();
            let r = load::<Rank2<N, O>>(&st, concat!($name, ".r")).realize::<(usize, Const<O>)>();
            // evaluation
            let y = m.try_forward((x.clone(), &g)).unwrap();
            assert_close(concat!($name, " y"), &y.as_vec(), &y_ref);
            // training: gradients of sum(y ⊙ r)
            // (a leaky trace keeps the input's gradient too)
            let y = m.try_forward_mut((x.leaky_trace(), &g)).unwrap();
            let grads = (y * r).sum().backward();
            assert_close(concat!($name, " grad x"), &grads.get(&x).as_vec(),
                &load::<Rank2<N, F>>(&st, concat!($name, ".grad.x")).as_vec());
            $(
                assert_close(concat!($name, " grad ", $key), &grads.get(&m.$($field).+).as_vec(),
                    &load::<$shape>(&st, concat!($name, ".grad.", $key)).as_vec());
            )*
            let _: bool = $edge;
        }
    };
}

torch_case!(gcn_matches_pyg, "gcn", Gcn<F, O, f64, Cpu>,
    [(weight, "lin.weight", Rank2<O, F>), (bias, "bias", Rank1<O>)], false);
torch_case!(graph_conv_sum_matches_pyg, "graph_conv_sum", GraphConv<F, O, SumAggr, f64, Cpu>,
    [(lin_rel.weight, "lin_rel.weight", Rank2<O, F>), (lin_rel.bias, "lin_rel.bias", Rank1<O>),
     (lin_root.weight, "lin_root.weight", Rank2<O, F>)], false);
torch_case!(graph_conv_mean_matches_pyg, "graph_conv_mean", GraphConv<F, O, MeanAggr, f64, Cpu>,
    [(lin_rel.weight, "lin_rel.weight", Rank2<O, F>), (lin_rel.bias, "lin_rel.bias", Rank1<O>),
     (lin_root.weight, "lin_root.weight", Rank2<O, F>)], false);
torch_case!(graph_conv_max_matches_pyg, "graph_conv_max", GraphConv<F, O, MaxAggr, f64, Cpu>,
    [(lin_rel.weight, "lin_rel.weight", Rank2<O, F>), (lin_rel.bias, "lin_rel.bias", Rank1<O>),
     (lin_root.weight, "lin_root.weight", Rank2<O, F>)], false);
torch_case!(message_passing_matches_pyg, "mpnn",
    MessagePassing<{ 2 * F + K }, (Dense<{ 2 * F + K }, 5, f64, Cpu>, typenet::layers::Tanh, Dense<5, O, f64, Cpu>), SumAggr>,
    [(nn.0.weight, "nn.0.weight", Rank2<5, { 2 * F + K }>), (nn.0.bias, "nn.0.bias", Rank1<5>),
     (nn.2.weight, "nn.2.weight", Rank2<O, 5>), (nn.2.bias, "nn.2.bias", Rank1<O>)], true);

#[test]
fn gcn_keys_are_pyg_keys() {
    let dev = Cpu::default();
    let m = Gcn::<F, O, f64, Cpu>::build(&dev);
    let path = std::env::temp_dir().join(format!("typenet_gcn_keys_{}.safetensors", std::process::id()));
    m.save_safetensors(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<_> = st.names().into_iter().cloned().collect();
    names.sort();
    assert_eq!(names, vec!["bias".to_string(), "lin.weight".to_string()]);
    assert_eq!(m.bias.as_vec(), vec![0.0; O], "zero bias, as GCNConv");
    let bound = (6.0 / (F + O) as f64).sqrt();
    assert!(m.weight.as_vec().iter().all(|w| w.abs() <= bound), "glorot-uniform weight");
}
