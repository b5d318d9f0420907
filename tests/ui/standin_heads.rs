// A network with several outputs (`heads`) and one shape error: only that error, none at
// its correct call sites (a tuple of outputs, unbatched and batched, with a tape).
use typenet::prelude::*;

network! {
    /// The only error: 4 values cannot be reshaped to [3].
    pub Encoder: [6] -> (mean: [2], log_var: [3]) {
        dense(4), relu, reshape([3]),
        heads { mean: { dense(2) }, log_var: { dense(3) } },
    }
}

fn main() {
    let dev = Cpu::default();
    let mut e = Encoder::<f32, Cpu>::build(&dev);
    let (_, _): (Tensor<Rank1<2>, f32, Cpu>, Tensor<Rank1<3>, f32, Cpu>) = e.forward(dev.zeros::<Rank1<6>>());
    let x: Tensor<(usize, Const<6>), f32, Cpu> = dev.zeros_like(&(5, Const));
    let (_, lb) = e.try_forward(x.clone()).unwrap();
    let _: Tensor<(usize, Const<3>), f32, Cpu> = lb;
    let grads = e.alloc_grads();
    let (m, l) = e.forward_mut(x.traced(grads));
    let _ = (m.sum() + l.sum()).backward();
}
