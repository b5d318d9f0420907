// A network whose input holds indices (it starts with `embedding`) and one shape error: only
// that error, none at its correct call sites (`usize` tokens, unbatched and batched, the tape
// on the tokens).
use typenet::layers::NetworkError;
use typenet::prelude::*;

network! {
    /// The only error: 3 heads do not divide the width 4.
    pub Lm: [t] -> [t, 5] { embedding(10, 4), positional(max = 8), transformer(heads = 3, ff = 8), dense(5) }
}

fn run(dev: &Cpu) -> Result<(), NetworkError> {
    let mut lm = Lm::<f32, Cpu>::build(dev);
    let tokens: Tensor<(usize,), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 4], (3,));
    let _: Tensor<(usize, Const<5>), f32, Cpu> = lm.try_forward(tokens.clone())?;
    let batch: Tensor<(usize, usize), usize, Cpu> = dev.tensor_from_vec(vec![0, 1, 4, 2], (2, 2));
    let _: Tensor<(usize, usize, Const<5>), f32, Cpu> = lm.forward(batch);
    let grads = lm.alloc_grads();
    let _ = lm.forward_mut(tokens.traced(grads)).sum().backward();
    Ok(())
}

fn main() {
    run(&Cpu::default()).unwrap();
}
