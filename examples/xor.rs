//! XOR: the smallest problem a perceptron cannot solve and a two-layer network can.
//!
//!     cargo run --release --example xor
use typenet::prelude::*;

network! {
    /// Two inputs, a hidden layer of four tanh units, one logit.
    pub Xor: [2] -> [1] { dense(4), tanh, dense(1) }
}

fn main() {
    println!("{}", <Xor as Network>::summary());
    let dev = Cpu::seed_from_u64(0);
    let mut model = Xor::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&model, AdamConfig { lr: 0.05, ..Default::default() });
    let x = dev.tensor([[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).realize::<(usize, Const<2>)>();
    let y = dev.tensor([[0.0f32], [1.0], [1.0], [0.0]]).realize::<(usize, Const<1>)>();
    let mut grads = model.alloc_grads();
    for step in 0..=500 {
        let loss = binary_cross_entropy_with_logits_loss(model.forward_mut(x.trace(grads)), y.clone());
        if step % 100 == 0 {
            println!("step {step:>3}  loss {:.4}", loss.array());
        }
        grads = loss.backward();
        opt.update(&mut model, &grads).expect("every parameter has a gradient");
        model.zero_grads(&mut grads);
    }
    let p = model.forward(x.clone()).sigmoid().as_vec();
    for (xi, pi) in x.as_vec().chunks(2).zip(p) {
        println!("{xi:?} -> {pi:.3}");
    }
}
