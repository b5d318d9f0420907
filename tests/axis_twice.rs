//! One run-time axis named twice in a single input (`[n, n]`, DSL §6: axes with the same name
//! must agree at run time): a disagreement is an `Err` from `try_forward`, never a panic.

use typenet::layers::NetworkError;
use typenet::prelude::*;

network! {
    pub Square: [n, n] -> [n, n] { relu }
}

#[test]
fn a_square_input_runs_and_a_rectangular_one_is_an_error() {
    let dev = Cpu::default();
    let m = Square::<f32, Cpu>::build(&dev);
    let x: Tensor<(usize, usize), f32, Cpu> = dev.tensor_from_vec(vec![-1.0, 2.0, 3.0, -4.0], (2, 2));
    assert_eq!(m.try_forward(x).unwrap().as_vec(), vec![0.0, 2.0, 3.0, 0.0]);
    let bad: Tensor<(usize, usize), f32, Cpu> = dev.zeros_like(&(2, 3));
    let e: NetworkError = m.try_forward(bad).unwrap_err();
    assert!(e.to_string().contains("`n`") && e.to_string().contains('2') && e.to_string().contains('3'), "{e}");
    // Batched: axes 1 and 2 of the batch.
    let xb: Tensor<(usize, usize, usize), f32, Cpu> = dev.zeros_like(&(4, 3, 3));
    assert_eq!(m.try_forward(xb).unwrap().shape().concrete(), [4, 3, 3]);
    let bad: Tensor<(usize, usize, usize), f32, Cpu> = dev.zeros_like(&(4, 3, 2));
    assert!(m.try_forward(bad).is_err());
}
