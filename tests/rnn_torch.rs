//! Agreement with PyTorch's `nn.RNN`/`nn.LSTM`/`nn.GRU` (outputs and gradients, float64, to
//! 1e-5) using the fixtures written by `tools/rnn_fixtures.py`: PyTorch's parameters load by
//! key into typenet's layers.

use ::safetensors::SafeTensors;
use typenet::dfdx::prelude::*;
use typenet::layers::*;

const B: usize = 2;
const T: usize = 5;
const F: usize = 3;
const H: usize = 4;

fn fixtures() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rnn.safetensors")).unwrap()
}

fn assert_close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "{what}: max |typenet − torch| = {worst:e}");
}

macro_rules! torch_case {
    ($test:ident, $name:literal, $ty:ty, $o:expr, [$($field:ident),*]) => {
        #[test]
        fn $test() {
            let bytes = fixtures();
            let st = SafeTensors::deserialize(&bytes).unwrap();
            let dev = Cpu::default();
            let mut m = <$ty>::build(&dev);
            $(
                m.$field.load_safetensor(&st, &format!("{}.{}", $name, stringify!($field))).unwrap();
            )*
            let mut x: Tensor<Rank3<B, T, F>, f64, Cpu> = dev.zeros();
            x.load_safetensor(&st, &format!("{}.x", $name)).unwrap();
            let mut y_ref: Tensor<Rank3<B, T, { $o }>, f64, Cpu> = dev.zeros();
            y_ref.load_safetensor(&st, &format!("{}.y", $name)).unwrap();
            let mut r: Tensor<Rank3<B, T, { $o }>, f64, Cpu> = dev.zeros();
            r.load_safetensor(&st, &format!("{}.r", $name)).unwrap();

            // batched, run-time batch size, compile-time length
            let xb = x.clone().realize::<(usize, Const<T>, Const<F>)>();
            let y = m.forward(xb.clone());
            assert_close(concat!($name, " y"), &y.as_vec(), &y_ref.as_vec());
            // unbatched, run-time length
            for b in 0..B {
                let xs = x.clone().select(dev.tensor(b)).realize::<(usize, Const<F>)>();
                let ys = m.forward(xs);
                let yr = y_ref.clone().select(dev.tensor(b));
                assert_close(concat!($name, " y (unbatched)"), &ys.as_vec(), &yr.as_vec());
            }
            // gradients of sum(y ⊙ r), through ModuleMut
            let y = m.forward_mut(xb.leaky_trace());
            let loss = (y * r.realize::<(usize, Const<T>, Const<{ $o }>)>()).sum::<Rank0, _>();
            let g = loss.backward();
            let mut gx: Tensor<Rank3<B, T, F>, f64, Cpu> = dev.zeros();
            gx.load_safetensor(&st, &format!("{}.grad.x", $name)).unwrap();
            assert_close(concat!($name, " grad x"), &g.get(&xb).as_vec(), &gx.as_vec());
            $(
                let mut want = m.$field.clone();
                want.load_safetensor(&st, &format!("{}.grad.{}", $name, stringify!($field))).unwrap();
                assert_close(
                    concat!($name, " grad ", stringify!($field)),
                    &g.get(&m.$field).as_vec(),
                    &want.as_vec(),
                );
            )*
        }
    };
}

torch_case!(rnn_tanh, "rnn_tanh", Rnn<F, H, f64, Cpu>, H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0]);
torch_case!(rnn_relu, "rnn_relu", RnnRelu<F, H, f64, Cpu>, H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0]);
torch_case!(lstm, "lstm", Lstm<F, H, f64, Cpu>, H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0]);
torch_case!(gru, "gru", Gru<F, H, f64, Cpu>, H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0]);
torch_case!(rnn_tanh_bi, "rnn_tanh_bi", BiRnn<F, H, { 2 * H }, f64, Cpu>, 2 * H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
     weight_ih_l0_reverse, weight_hh_l0_reverse, bias_ih_l0_reverse, bias_hh_l0_reverse]);
torch_case!(rnn_relu_bi, "rnn_relu_bi", BiRnnRelu<F, H, { 2 * H }, f64, Cpu>, 2 * H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
     weight_ih_l0_reverse, weight_hh_l0_reverse, bias_ih_l0_reverse, bias_hh_l0_reverse]);
torch_case!(lstm_bi, "lstm_bi", BiLstm<F, H, { 2 * H }, f64, Cpu>, 2 * H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
     weight_ih_l0_reverse, weight_hh_l0_reverse, bias_ih_l0_reverse, bias_hh_l0_reverse]);
torch_case!(gru_bi, "gru_bi", BiGru<F, H, { 2 * H }, f64, Cpu>, 2 * H,
    [weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0,
     weight_ih_l0_reverse, weight_hh_l0_reverse, bias_ih_l0_reverse, bias_hh_l0_reverse]);

/// A PyTorch-style state dict (just this layer's keys) loads with dfdx's own
/// `load_safetensors`, and typenet saves the same keys and shapes.
#[test]
fn keys_and_shapes_round_trip_like_pytorch() {
    let dev = Cpu::default();
    let m = <BiLstm<F, H, { 2 * H }, f64, Cpu>>::build(&dev);
    let dir = std::env::temp_dir().join(format!("typenet_rnn_keys_{}.safetensors", std::process::id()));
    m.save_safetensors(&dir).unwrap();
    let bytes = std::fs::read(&dir).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<(String, Vec<usize>)> =
        st.tensors().into_iter().map(|(k, v)| (k, v.shape().to_vec())).collect();
    names.sort();
    let mut want = vec![];
    for suffix in ["", "_reverse"] {
        want.push((format!("bias_hh_l0{suffix}"), vec![4 * H]));
        want.push((format!("bias_ih_l0{suffix}"), vec![4 * H]));
        want.push((format!("weight_hh_l0{suffix}"), vec![4 * H, H]));
        want.push((format!("weight_ih_l0{suffix}"), vec![4 * H, F]));
    }
    want.sort();
    assert_eq!(names, want);
    let mut m2 = <BiLstm<F, H, { 2 * H }, f64, Cpu>>::build(&dev);
    m2.load_safetensors(&dir).unwrap();
    assert_eq!(m2.weight_hh_l0_reverse.as_vec(), m.weight_hh_l0_reverse.as_vec());
    std::fs::remove_file(&dir).ok();
}
