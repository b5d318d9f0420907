// A network with several inputs and one shape error: only that error, none at its correct
// call sites (unbatched and batched, with and without a tape, `try_forward` with `?`).
use typenet::layers::NetworkError;
use typenet::prelude::*;

network! {
    /// The only error: a kernel larger than the image.
    pub Fusion: (image: [1, 6, 6], meta: [3]) -> [2] {
        conv2d(2, kernel = 7), relu, global_avg_pool,
        concat { {}, { meta, dense(2), relu } },
        dense(2),
    }
}

fn run(dev: &Cpu) -> Result<(), NetworkError> {
    let mut f = Fusion::<f32, Cpu>::build(dev);
    let _: Tensor<Rank1<2>, f32, Cpu> = f.forward((dev.zeros::<Rank3<1, 6, 6>>(), dev.zeros::<Rank1<3>>()));
    let img: Tensor<(usize, Const<1>, Const<6>, Const<6>), f32, Cpu> = dev.zeros_like(&(4, Const, Const, Const));
    let meta: Tensor<(usize, Const<3>), f32, Cpu> = dev.zeros_like(&(4, Const));
    let _: Tensor<(usize, Const<2>), f32, Cpu> = f.try_forward((img.clone(), meta.clone()))?;
    let grads = f.alloc_grads();
    let _ = f.forward_mut((img.traced(grads), meta)).square().mean().backward();
    Ok(())
}

fn main() {
    run(&Cpu::default()).unwrap();
}
