//! `rnn`, `lstm`, `gru` and `last` in `network!` declarations.

use typenet::prelude::*;

network! {
    /// Sequence classifier: the final hidden state feeds a dense head.
    pub SeqClassifier: [t, 32] -> [10] { lstm(64), last, dense(10) }

    /// Bidirectional GRU: `last` takes forward's final and backward's first step.
    pub BiSeq: [t, 8] -> [5] { encoder: gru(16, bidirectional = true), last, dense(32 -> 5) }

    /// Per-step tagger with an explicit input size and ReLU RNN.
    pub Tagger: [t, 8] -> [t, 3] { rnn(8 -> 16, activation = relu), dense(3) }

    /// Compile-time length.
    pub Fixed: [20, 4] -> [6] { lstm(6), dropout(0.1), last }

    /// Bidirectional plain RNN straight into a dense head per step.
    pub BiTag: [t, 4] -> [t, 2] { rnn(3, bidirectional = true), dense(2) }
}

#[test]
fn shapes_and_param_counts() {
    let dev = Cpu::seed_from_u64(0);
    let m = SeqClassifier::<f32, Cpu>::build(&dev);
    assert_eq!(<SeqClassifier as Network>::NUM_PARAMS, m.num_trainable_params());
    assert_eq!(<SeqClassifier as Network>::NUM_PARAMS, 4 * 64 * (32 + 64 + 2) + 64 * 10 + 10);
    let y: Tensor<(usize, Const<10>), f32, Cpu> = m.forward(dev.zeros_like(&(3usize, 7usize, Const::<32>)));
    assert_eq!(y.shape().0, 3);
    let _: Tensor<Rank1<10>, f32, Cpu> = m.forward(dev.zeros_like(&(5usize, Const::<32>)));

    let b = BiSeq::<f64, Cpu>::build(&dev);
    assert_eq!(<BiSeq as Network>::NUM_PARAMS, b.num_trainable_params());
    assert_eq!(<BiSeq as Network>::NUM_PARAMS, 2 * 3 * 16 * (8 + 16 + 2) + 32 * 5 + 5);

    let t = Tagger::<f32, Cpu>::build(&dev);
    let y: Tensor<(usize, usize, Const<3>), f32, Cpu> = t.forward(dev.zeros_like(&(2usize, 9usize, Const::<8>)));
    assert_eq!(y.shape().1, 9);
    assert_eq!(<Tagger as Network>::NUM_PARAMS, 16 * (8 + 16 + 2) + 16 * 3 + 3);

    let f = Fixed::<f32, Cpu>::build(&dev);
    let _: Tensor<Rank1<6>, f32, Cpu> = f.forward(dev.zeros::<Rank2<20, 4>>());
    let _: Tensor<(usize, Const<6>), f32, Cpu> = f.forward(dev.zeros_like(&(2usize, Const::<20>, Const::<4>)));

    let bt = BiTag::<f32, Cpu>::build(&dev);
    let _: Tensor<(usize, Const<2>), f32, Cpu> = bt.forward(dev.zeros_like(&(5usize, Const::<4>)));
    assert!(<SeqClassifier as Network>::summary().contains("lstm"));
}

#[test]
fn bidirectional_last_takes_both_ends() {
    let dev = Cpu::seed_from_u64(1);
    let m = BiSeq::<f64, Cpu>::build(&dev);
    let x: Tensor<(usize, Const<8>), f64, Cpu> = dev.sample_normal_like(&(6usize, Const::<8>));
    let y = m.forward(x.clone()).as_vec();
    let h = m.encoder.forward(x);
    let last = typenet::layers::LastBidirectional::<16>.forward(h);
    let want = m.dense_1.forward(last).as_vec();
    for (a, b) in y.iter().zip(&want) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn keys_are_pytorch_names_under_the_layer_name() {
    let dev = Cpu::default();
    let m = BiSeq::<f32, Cpu>::build(&dev);
    let path = std::env::temp_dir().join(format!("typenet_rnn_macro_{}.safetensors", std::process::id()));
    m.save_safetensors(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = ::safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys: Vec<String> = st.names().into_iter().cloned().collect();
    keys.sort();
    assert!(keys.contains(&"encoder.weight_ih_l0".to_string()), "{keys:?}");
    assert!(keys.contains(&"encoder.bias_hh_l0_reverse".to_string()), "{keys:?}");
    std::fs::remove_file(&path).ok();
}

#[test]
fn trains() {
    let dev = Cpu::seed_from_u64(2);
    let mut m = SeqClassifier::<f32, Cpu>::build(&dev);
    let mut opt = Adam::new(&m, AdamConfig { lr: 1e-2, ..Default::default() });
    let x: Tensor<(usize, usize, Const<32>), f32, Cpu> = dev.sample_normal_like(&(8usize, 5usize, Const::<32>));
    let mut onehot = vec![0.0f32; 80];
    for i in 0..8 {
        onehot[i * 10 + i % 10] = 1.0;
    }
    let y = dev.tensor_from_vec(onehot, (8usize, Const::<10>));
    let mut grads = m.alloc_grads();
    let mut losses = vec![];
    for _ in 0..30 {
        let loss = cross_entropy_with_logits_loss(m.forward_mut(x.clone().traced(grads)), y.clone());
        losses.push(loss.array());
        grads = loss.backward();
        opt.update(&mut m, &grads).unwrap();
        m.zero_grads(&mut grads);
    }
    assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
}
