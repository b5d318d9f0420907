// A graph network (per-sample only; after `graph_pool` one row per graph) with one shape
// error: only that error, none at its correct call sites.
use typenet::graph::Graph;
use typenet::layers::NetworkError;
use typenet::prelude::*;

network! {
    /// The only error: the last layer produces [3], not the declared [2].
    pub Pooled: (x: [n, 3], g: graph[n]) -> [2] { gcn(4), relu, graph_pool(mean), dense(3) }
}

fn run(dev: &Cpu) -> Result<(), NetworkError> {
    let mut p = Pooled::<f32, Cpu>::build(dev);
    let b = Graph::batch(&[Graph::undirected(2, &[(0, 1)]).unwrap(), Graph::undirected(3, &[(1, 2)]).unwrap()]);
    let x: Tensor<(usize, Const<3>), f32, Cpu> = dev.zeros_like(&(5, Const));
    let _: Tensor<(usize, Const<2>), f32, Cpu> = p.try_forward((x.clone(), &b))?;
    let grads = p.alloc_grads();
    let _ = p.forward_mut((x.traced(grads), &b)).sum().backward();
    Ok(())
}

fn main() {
    run(&Cpu::default()).unwrap();
}
