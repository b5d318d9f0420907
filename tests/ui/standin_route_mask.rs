// A network with an index input selecting `route`'s branches and species, and a mask, with
// one shape error: only that error, none at its correct call site.
use typenet::layers::{Mask, NetworkError};
use typenet::prelude::*;

network! {
    /// The only error: 3 heads do not divide the width 8.
    pub Species: (pos: [n, 3], z: [n], m: mask[n]) -> [1] {
        radial_basis(4, cutoff = 3.0, species = z, kinds = 2),
        attention(heads = 3, mask = m),
        route(z) { { dense(4), tanh, dense(1) }, { dense(4), tanh, dense(1) } },
        pool(sum),
    }
}

fn run(dev: &Cpu, m: &Mask) -> Result<(), NetworkError> {
    let a = Species::<f64, Cpu>::build(dev);
    let pos: Tensor<(usize, Const<3>), f64, Cpu> = dev.zeros_like(&(5, Const));
    let z: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 1, 0, 1], (5,));
    let e: Tensor<Rank1<1>, f64, Cpu, _> = a.try_forward((pos.traced(a.alloc_grads()), z, m))?;
    let _ = e.sum().backward();
    Ok(())
}

fn main() {}
