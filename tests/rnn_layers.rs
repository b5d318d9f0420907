//! Shapes, `Last`/`LastBidirectional`, parameter counts and training plumbing of the
//! recurrent layers.

use typenet::dfdx::prelude::*;
use typenet::dfdx::optim::{Adam, AdamConfig};
use typenet::layers::*;

#[test]
fn input_and_output_shapes() {
    let dev = Cpu::seed_from_u64(0);
    let lstm = <Lstm<3, 5, f32, Cpu>>::build(&dev);
    // unbatched, run-time length
    let y: Tensor<(usize, Const<5>), f32, Cpu> = lstm.forward(dev.zeros_like(&(7usize, Const::<3>)));
    assert_eq!(y.shape().0, 7);
    // unbatched, compile-time length
    let _: Tensor<Rank2<4, 5>, f32, Cpu> = lstm.forward(dev.zeros::<Rank2<4, 3>>());
    // batched, run-time length
    let y: Tensor<(usize, usize, Const<5>), f32, Cpu> =
        lstm.forward(dev.zeros_like(&(2usize, 9usize, Const::<3>)));
    assert_eq!((y.shape().0, y.shape().1), (2, 9));
    // batched, compile-time length
    let _: Tensor<(usize, Const<6>, Const<5>), f32, Cpu> =
        lstm.forward(dev.zeros_like(&(2usize, Const::<6>, Const::<3>)));
    // bidirectional
    let bi = <BiGru<3, 5, 10, f32, Cpu>>::build(&dev);
    let _: Tensor<(usize, usize, Const<10>), f32, Cpu> =
        bi.forward(dev.zeros_like(&(2usize, 9usize, Const::<3>)));
    let _: Tensor<(usize, Const<10>), f32, Cpu> = bi.forward(dev.zeros_like(&(4usize, Const::<3>)));
}

#[test]
fn parameter_counts_match_pytorch() {
    let dev = Cpu::default();
    // PyTorch: G·H·(F + H) + 2·G·H per direction
    assert_eq!(<Rnn<32, 64, f32, Cpu>>::build(&dev).num_trainable_params(), 64 * (32 + 64) + 2 * 64);
    assert_eq!(<RnnRelu<32, 64, f32, Cpu>>::build(&dev).num_trainable_params(), 64 * (32 + 64) + 2 * 64);
    assert_eq!(<Lstm<32, 64, f32, Cpu>>::build(&dev).num_trainable_params(), 4 * 64 * 96 + 8 * 64);
    assert_eq!(<Gru<32, 64, f32, Cpu>>::build(&dev).num_trainable_params(), 3 * 64 * 96 + 6 * 64);
    assert_eq!(<BiLstm<32, 64, 128, f32, Cpu>>::build(&dev).num_trainable_params(), 2 * (4 * 64 * 96 + 8 * 64));
}

#[test]
fn init_is_uniform_within_one_over_sqrt_h() {
    let dev = Cpu::seed_from_u64(1);
    let m = <Lstm<8, 16, f64, Cpu>>::build(&dev);
    let bound = 1.0 / 4.0;
    for v in m.weight_ih_l0.as_vec().into_iter().chain(m.weight_hh_l0.as_vec()).chain(m.bias_hh_l0.as_vec()) {
        assert!(v.abs() <= bound);
    }
    let w = m.weight_hh_l0.as_vec();
    assert!(w.iter().cloned().fold(0.0, f64::max) > 0.9 * bound);
}

#[test]
fn last_takes_the_final_step() {
    let dev = Cpu::default();
    let x = dev.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
    let y = Last.forward(x.clone().realize::<(usize, Const<2>)>());
    assert_eq!(y.array(), [5.0, 6.0]);
    let xb = dev.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]);
    let yb = Last.forward(xb.realize::<(usize, usize, Const<2>)>());
    assert_eq!(yb.as_vec(), vec![3.0, 4.0, 7.0, 8.0]);
    // gradient flows only to the final step
    let g = Last.forward(x.leaky_trace()).sum().backward();
    assert_eq!(g.get(&x).array(), [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]]);
}

#[test]
fn last_bidirectional_takes_forward_last_and_backward_first() {
    let dev = Cpu::default();
    // H = 2: columns 0..2 forward, 2..4 backward
    let x = dev.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]);
    let y = LastBidirectional::<2>.forward(x.clone());
    assert_eq!(y.array(), [9.0, 10.0, 3.0, 4.0]);
    let xb = x.clone().broadcast::<Rank3<2, 3, 4>, _>().realize::<(usize, usize, Const<4>)>();
    let yb = LastBidirectional::<2>.forward(xb);
    assert_eq!(yb.as_vec(), vec![9.0, 10.0, 3.0, 4.0, 9.0, 10.0, 3.0, 4.0]);
    let g = LastBidirectional::<2>.forward(x.leaky_trace()).sum().backward();
    assert_eq!(g.get(&x).array(), [[0.0, 0.0, 1.0, 1.0], [0.0; 4], [1.0, 1.0, 0.0, 0.0]]);
}

/// For a bidirectional LSTM, `LastBidirectional` equals the final states of two separate
/// unidirectional runs (forward on x, forward on reversed x).
#[test]
fn bidirectional_is_two_unidirectional_runs() {
    let dev = Cpu::seed_from_u64(3);
    let bi = <BiLstm<3, 4, 8, f64, Cpu>>::build(&dev);
    let mut fwd = <Lstm<3, 4, f64, Cpu>>::build(&dev);
    let mut bwd = <Lstm<3, 4, f64, Cpu>>::build(&dev);
    fwd.weight_ih_l0 = bi.weight_ih_l0.clone();
    fwd.weight_hh_l0 = bi.weight_hh_l0.clone();
    fwd.bias_ih_l0 = bi.bias_ih_l0.clone();
    fwd.bias_hh_l0 = bi.bias_hh_l0.clone();
    bwd.weight_ih_l0 = bi.weight_ih_l0_reverse.clone();
    bwd.weight_hh_l0 = bi.weight_hh_l0_reverse.clone();
    bwd.bias_ih_l0 = bi.bias_ih_l0_reverse.clone();
    bwd.bias_hh_l0 = bi.bias_hh_l0_reverse.clone();
    let x: Tensor<Rank2<6, 3>, f64, Cpu> = dev.sample_normal();
    let xv = x.array();
    let mut rev = xv;
    rev.reverse();
    let hb = bi.forward(x.clone());
    let hf = fwd.forward(x);
    let hr = bwd.forward(dev.tensor(rev));
    let last = LastBidirectional::<4>.forward(hb).array();
    let f_last = Last.forward(hf).array();
    let r_last = Last.forward(hr).array();
    for j in 0..4 {
        assert!((last[j] - f_last[j]).abs() < 1e-12);
        assert!((last[4 + j] - r_last[j]).abs() < 1e-12);
    }
}

/// One optimiser step through `Lstm -> Last -> Dense` changes every parameter, and training
/// reduces the loss on a tiny task.
#[test]
fn trains_with_adam() {
    let dev = Cpu::seed_from_u64(4);
    type Model = (Lstm<2, 8, f32, Cpu>, Last, typenet::layers::Dense<8, 1, f32, Cpu>);
    let mut m: Model = (Lstm::build(&dev), Last, typenet::layers::Dense::build(&dev));
    let mut opt = Adam::new(&m, AdamConfig { lr: 1e-2, ..Default::default() });
    let x: Tensor<(usize, usize, Const<2>), f32, Cpu> =
        dev.sample_like(&(16usize, 10usize, Const::<2>), rand_distr::Uniform::new(-1.0f32, 1.0));
    // target: sum of the first feature over the sequence
    let xv = x.as_vec();
    let tv: Vec<f32> = (0..16).map(|b| (0..10).map(|t| xv[(b * 10 + t) * 2]).sum::<f32>()).collect();
    let target = dev.tensor_from_vec(tv, (16usize, Const::<1>));
    let mut grads = m.alloc_grads();
    let mut first = None;
    let mut last = 0.0;
    for _ in 0..150 {
        let y = m.forward_mut(x.clone().traced(grads));
        let loss = mse_loss(y, target.clone());
        last = loss.array();
        first.get_or_insert(last);
        grads = loss.backward();
        opt.update(&mut m, &grads).unwrap();
        m.zero_grads(&mut grads);
    }
    assert!(last < 0.2 * first.unwrap(), "loss {} -> {last}", first.unwrap());
}

/// Empty sequences and empty batches give empty outputs, no panic. (dfdx's own `sum` divides
/// by zero on empty tensors, so there is no scalar loss to differentiate here.)
#[test]
fn empty_sequences_and_batches() {
    let dev = Cpu::seed_from_u64(5);
    let m = <BiLstm<3, 4, 8, f32, Cpu>>::build(&dev);
    let y = m.forward(dev.zeros_like(&(0usize, Const::<3>)));
    assert_eq!(y.shape().0, 0);
    let x: Tensor<(usize, usize, Const<3>), f32, Cpu> = dev.zeros_like(&(0usize, 5usize, Const::<3>));
    let y = m.forward(x.leaky_trace());
    assert_eq!((y.shape().0, y.shape().1), (0, 5));
    let x: Tensor<(usize, usize, Const<3>), f32, Cpu> = dev.zeros_like(&(2usize, 0usize, Const::<3>));
    let y = m.forward(x);
    assert_eq!((y.shape().0, y.shape().1), (2, 0));
}
