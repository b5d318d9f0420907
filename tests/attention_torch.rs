//! Agreement with PyTorch's `nn.Embedding`, `nn.MultiheadAttention` and
//! `nn.TransformerEncoderLayer` (outputs and gradients, float64, to 1e-5) using the fixtures
//! written by `tools/attention_fixtures.py`: PyTorch's parameters load by name (strictly,
//! through `typenet::train::load`) into typenet's layers.

use ::safetensors::tensor::TensorView;
use ::safetensors::SafeTensors;
use typenet::dfdx::prelude::*;
use typenet::layers::*;
use typenet::layers::{Embedding, GeLU, ReLU, Transformer};

const B: usize = 2;
const T: usize = 5;
const D: usize = 8;

fn fixtures() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/attention.safetensors")).unwrap()
}

fn assert_close(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "{what}: max |typenet − torch| = {worst:e}");
}

fn values(st: &SafeTensors, key: &str) -> Vec<f64> {
    let v = st.tensor(key).unwrap_or_else(|_| panic!("fixture lacks {key}"));
    v.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Loads the parameters `CASE.param.*` of the fixture file into `model` by their PyTorch
/// names, through typenet's strict loader (a missing or extra key fails).
fn load_params<M: TensorCollection<f64, Cpu>>(st: &SafeTensors, case: &str, model: &mut M) {
    let prefix = format!("{case}.param.");
    let views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v)))
        .collect();
    assert!(!views.is_empty(), "no parameters for {case}");
    let path = std::env::temp_dir().join(format!("typenet-attention-{case}-{}.safetensors", std::process::id()));
    ::safetensors::tensor::serialize_to_file(views, &None, &path).unwrap();
    typenet::train::load(model, &path).unwrap_or_else(|e| panic!("{case}: {e}"));
    std::fs::remove_file(&path).ok();
}

fn x3(dev: &Cpu, st: &SafeTensors, key: &str) -> Tensor<(usize, usize, Const<D>), f64, Cpu> {
    dev.tensor_from_vec(values(st, key), (B, T, Const))
}

fn mask(st: &SafeTensors, case: &str) -> Option<Mask> {
    st.tensor(&format!("{case}.mask")).ok()?;
    Some(Mask::new(B, T, values(st, &format!("{case}.mask")).iter().map(|v| *v != 0.0).collect()).unwrap())
}

/// Output (evaluation, batched and unbatched), then input and parameter gradients of
/// `sum(y ⊙ r)` (training with dropout 0).
fn check_seq<M>(case: &str, m: &mut M, st: &SafeTensors, params: &[&str])
where
    M: TensorCollection<f64, Cpu>
        + for<'a> Module<(Tensor<(usize, usize, Const<D>), f64, Cpu>, &'a Mask), Output = Tensor<(usize, usize, Const<D>), f64, Cpu>>
        + Module<Tensor<(usize, usize, Const<D>), f64, Cpu>, Output = Tensor<(usize, usize, Const<D>), f64, Cpu>>
        + Module<Tensor<(usize, Const<D>), f64, Cpu>, Output = Tensor<(usize, Const<D>), f64, Cpu>>
        + for<'a> ModuleMut<
            (Tensor<(usize, usize, Const<D>), f64, Cpu, OwnedTape<f64, Cpu>>, &'a Mask),
            Output = Tensor<(usize, usize, Const<D>), f64, Cpu, OwnedTape<f64, Cpu>>,
        >
        + ModuleMut<
            Tensor<(usize, usize, Const<D>), f64, Cpu, OwnedTape<f64, Cpu>>,
            Output = Tensor<(usize, usize, Const<D>), f64, Cpu, OwnedTape<f64, Cpu>>,
        >,
    <M as Module<Tensor<(usize, usize, Const<D>), f64, Cpu>>>::Error: std::fmt::Debug,
{
    let dev = Cpu::default();
    load_params(st, case, m);
    let x = x3(&dev, st, &format!("{case}.x"));
    let y_ref = values(st, &format!("{case}.y"));
    let mask = mask(st, case);
    let y = match &mask {
        Some(k) => m.forward((x.clone(), k)),
        None => {
            // unbatched, one sample at a time
            for b in 0..B {
                let xs = x.clone().select(dev.tensor(b));
                let ys = m.forward(xs);
                assert_close(&format!("{case} y (unbatched)"), &ys.as_vec(), &y_ref[b * T * D..(b + 1) * T * D]);
            }
            m.forward(x.clone())
        }
    };
    assert_close(&format!("{case} y"), &y.as_vec(), &y_ref);

    let r = x3(&dev, st, &format!("{case}.r"));
    let y = match &mask {
        Some(k) => m.forward_mut((x.leaky_trace(), k)),
        None => m.forward_mut(x.leaky_trace()),
    };
    let g = (y * r).sum().backward();
    assert_close(&format!("{case} grad x"), &g.get(&x).as_vec(), &values(st, &format!("{case}.grad.x")));
    let _ = params;
    let mut n = 0;
    m.iter_tensors(&mut typenet_test_grads::Check { st, case, grads: &g, n: &mut n }).unwrap();
    assert_eq!(n, params.len(), "{case}: parameter gradients checked");
}

/// Visits every parameter and compares its gradient with `CASE.grad.param.<key>`.
mod typenet_test_grads {
    use super::*;
    use typenet::dfdx::nn::tensor_collection::{RecursiveWalker, TensorOptions, TensorVisitor, ViewTensorRef};

    pub struct Check<'a> {
        pub st: &'a SafeTensors<'a>,
        pub case: &'a str,
        pub grads: &'a Gradients<f64, Cpu>,
        pub n: &'a mut usize,
    }

    impl TensorVisitor<f64, Cpu> for Check<'_> {
        type Viewer = (ViewTensorRef, typenet::dfdx::nn::tensor_collection::ViewTensorName);
        type Err = CpuError;
        type E2 = f64;
        type D2 = Cpu;
        fn visit<S: Shape>(
            &mut self,
            _: TensorOptions<S, f64, Cpu>,
            (t, name): (&Tensor<S, f64, Cpu>, String),
        ) -> Result<Option<Tensor<S, f64, Cpu>>, CpuError> {
            let want = values(self.st, &format!("{}.grad.param.{name}", self.case));
            assert_close(&format!("{} grad {name}", self.case), &self.grads.get(t).as_vec(), &want);
            *self.n += 1;
            Ok(None)
        }
    }

    pub trait Walk {
        fn iter_tensors(&self, c: &mut Check) -> Result<(), CpuError>;
    }
    impl<M: TensorCollection<f64, Cpu>> Walk for M {
        fn iter_tensors(&self, c: &mut Check) -> Result<(), CpuError> {
            M::iter_tensors(&mut RecursiveWalker { m: (self, String::new()), f: c })?;
            Ok(())
        }
    }
}
use typenet_test_grads::Walk;

#[test]
fn embedding_matches_torch() {
    let bytes = fixtures();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dev = Cpu::default();
    let mut m = <Embedding<7, D, f64, Cpu>>::build(&dev);
    load_params(&st, "embedding", &mut m);
    let idx: Vec<usize> = values(&st, "embedding.x").iter().map(|v| *v as usize).collect();
    let idx = dev.tensor_from_vec(idx, (B, T));
    let y = m.forward(idx.clone());
    assert_close("embedding y", &y.as_vec(), &values(&st, "embedding.y"));
    let r = dev.tensor_from_vec(values(&st, "embedding.r"), (B, T, Const::<D>));
    let g = (m.forward_mut(idx.traced(m.alloc_grads())) * r).sum().backward();
    assert_close("embedding grad weight", &g.get(&m.weight).as_vec(), &values(&st, "embedding.grad.param.weight"));
}

#[test]
fn positional_matches_torch() {
    let bytes = fixtures();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dev = Cpu::default();
    let mut m = <Positional<6, D, f64, Cpu>>::build(&dev);
    load_params(&st, "positional", &mut m);
    let x = x3(&dev, &st, "positional.x");
    assert_close("positional y", &m.forward(x.clone()).as_vec(), &values(&st, "positional.y"));
    let r = x3(&dev, &st, "positional.r");
    let g = (m.forward_mut(x.leaky_trace()) * r).sum().backward();
    assert_close("positional grad x", &g.get(&x).as_vec(), &values(&st, "positional.grad.x"));
    assert_close("positional grad weight", &g.get(&m.weight).as_vec(), &values(&st, "positional.grad.param.weight"));
}

#[test]
fn sinusoidal_matches_torch_tutorial_table() {
    let bytes = fixtures();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dev = Cpu::default();
    let x: Tensor<(usize, Const<D>), f64, _> = dev.zeros_like(&(T, Const));
    assert_close("sinusoidal", &Sinusoidal.forward(x).as_vec(), &values(&st, "sinusoidal.table"));
}

const ATTN_PARAMS: &[&str] = &["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"];

#[test]
fn attention_matches_torch() {
    let bytes = fixtures();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dev = Cpu::default();
    check_seq("attn_plain", &mut <Attention<D, 2, f64, Cpu>>::build(&dev), &st, ATTN_PARAMS);
    check_seq("attn_causal", &mut <Attention<D, 2, f64, Cpu, true>>::build(&dev), &st, ATTN_PARAMS);
    check_seq("attn_padding", &mut <Attention<D, 2, f64, Cpu>>::build(&dev), &st, ATTN_PARAMS);
}

const TF_PARAMS: &[&str] = &[
    "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
    "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
    "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
];

fn no_dropout<const NF: bool, const C: bool, A: FeedForwardActivation>(
    mut m: Transformer<D, 2, 16, f64, Cpu, A, NF, C>,
) -> Transformer<D, 2, 16, f64, Cpu, A, NF, C> {
    m.dropout = 0.0;
    m
}

#[test]
fn transformer_matches_torch() {
    let bytes = fixtures();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let dev = Cpu::default();
    check_seq("tf_post_relu", &mut no_dropout(<Transformer<D, 2, 16, f64, Cpu>>::build(&dev)), &st, TF_PARAMS);
    check_seq("tf_pre_relu", &mut no_dropout(<Transformer<D, 2, 16, f64, Cpu, ReLU, true>>::build(&dev)), &st, TF_PARAMS);
    check_seq(
        "tf_post_gelu_causal",
        &mut no_dropout(<Transformer<D, 2, 16, f64, Cpu, GeLU, false, true>>::build(&dev)),
        &st,
        TF_PARAMS,
    );
    check_seq(
        "tf_pre_gelu_padding",
        &mut no_dropout(<Transformer<D, 2, 16, f64, Cpu, GeLU, true>>::build(&dev)),
        &st,
        TF_PARAMS,
    );
}
