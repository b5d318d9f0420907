// A network whose layers check their input at run time (its error is a `NetworkError`),
// with one shape error, used as a layer in the same invocation and from another module:
// only that error, none at the networks using it or at their call sites.
use typenet::layers::NetworkError;
use typenet::prelude::*;

mod blocks {
    use typenet::prelude::*;

    network! {
        /// The only error: 3 heads do not divide the width 4.
        pub Mixer: [t, 4] -> [t, 4] { positional(max = 8), transformer(heads = 3, ff = 8) }
        pub Near: [t, 4] -> [t, 2] { Mixer, dense(2) }
    }
}

network! {
    pub Far: [t, 4] -> [t, 2] { blocks::Mixer, dense(2) }
}

fn main() -> Result<(), NetworkError> {
    let dev = Cpu::default();
    let x: Tensor<(usize, Const<4>), f32, Cpu> = dev.zeros_like(&(3, Const));
    let near = blocks::Near::<f32, Cpu>::build(&dev);
    let _: Tensor<(usize, Const<2>), f32, Cpu> = near.try_forward(x.clone())?;
    let mut far = Far::<f32, Cpu>::build(&dev);
    let _ = far.forward_mut(x.traced(far.alloc_grads())).sum().backward();
    Ok(())
}
