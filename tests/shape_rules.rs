//! One set of shape rules (`typenet::shapes`): the macro's `NUM_PARAMS` (computed by those
//! rules) equals dfdx's count of the tensors the network actually allocates, for a network of
//! every layer kind with parameters, and the runtime's window arithmetic agrees with them.

use typenet::prelude::*;

network! {
    /// Vectors: dense (with and without bias), prelu, batch_norm, layer_norm, residual and
    /// residual(project) (dense projection), concat, sum.
    pub Vectors: [4] -> [3] {
        dense(6), prelu, batch_norm, layer_norm, dense(5, bias = false),
        residual { dense(5), relu }, residual(project) { dense(3) },
        concat { { dense(2) }, { dense(1), tanh } }, sum { { dense(3) }, { dense(3, bias = false) } },
    }

    /// Maps: conv2d (padding, stride, dilation, `same` with an even kernel), conv1d, pools,
    /// batch_norm on channels, residual(project) on maps (1×1 convolution).
    pub Maps: [2, 9, 9] -> [4] {
        conv2d(3, kernel = 4, padding = same), batch_norm, relu,
        conv2d(4, kernel = (3, 2), stride = (2, 1), padding = 1, dilation = (1, 2)), max_pool2d(2),
        residual(project) { conv2d(5, kernel = 3, padding = same) }, avg_pool2d(2, padding = 1),
        global_max_pool, dense(4),
    }

    pub Signal: [2, 16] -> [3] {
        conv1d(4, kernel = 3, dilation = 2), residual(project) { conv1d(6, kernel = 5, padding = same) },
        max_pool1d(2), avg_pool1d(3, stride = 2), flatten, dense(3),
    }

    /// Sequences: rnn (tanh, relu, bidirectional), lstm, gru, last.
    pub Sequences: [t, 3] -> [2] {
        rnn(4), rnn(4, activation = relu, bidirectional = true), lstm(5), gru(3, bidirectional = true),
        last, dense(2),
    }

    /// Sets: radial_basis, set_dense, each, pool; and another network used as a layer.
    pub Sets: [n, 3] -> [3] {
        radial_basis(4, cutoff = 2.0), set_dense(5), each { dense(4), relu }, pool(mean), Vectors, dropout(0.1),
    }
}

network! {
    /// Graph layers (DSL §6): gcn, graph_conv, message_passing, cfconv.
    pub Graphs: (x: [n, 4], p: [n, 3], g: graph[n, 2]) -> [2] {
        gcn(5), graph_conv(4, aggr = max), message_passing { dense(3), tanh },
        cfconv(3, rbf = 4, cutoff = 2.0, positions = p), graph_pool(sum), dense(2),
    }
    /// Tokens and attention: embedding, positional, attention, transformer.
    pub Tokens: [t] -> [t, 4] {
        embedding(7, 4), positional(max = 5), attention(heads = 2), transformer(heads = 2, ff = 8), dense(4),
    }
}

fn check<N: Network + TensorCollection<f32, Cpu>>(m: &N) {
    assert_eq!(m.num_trainable_params(), N::NUM_PARAMS);
}

#[test]
fn num_params_is_what_is_allocated_for_every_layer_kind() {
    let dev = Cpu::default();
    check(&Vectors::<f32, Cpu>::build(&dev));
    check(&Maps::<f32, Cpu>::build(&dev));
    check(&Signal::<f32, Cpu>::build(&dev));
    check(&Sequences::<f32, Cpu>::build(&dev));
    check(&Sets::<f32, Cpu>::build(&dev));
    check(&Graphs::<f32, Cpu>::build(&dev));
    check(&Tokens::<f32, Cpu>::build(&dev));
    // By hand (PyTorch's layouts): LSTM(3 → 4·…) etc. are covered by the rule's own tests; one
    // independent figure here, so a rule and its caller cannot agree on a wrong count.
    // rnn(4): 4·3 + 4·4 + 2·4 = 36; bi relu rnn(4 → 4): 2·(4·4 + 4·4 + 8) = 80;
    // lstm(8 → 5): 4·5·(8 + 5 + 2) = 300; bi gru(5 → 3): 2·3·3·(5 + 3 + 2) = 180; dense(6 → 2) = 14.
    assert_eq!(<Sequences as Network>::NUM_PARAMS, 36 + 80 + 300 + 180 + 14);
}

#[test]
fn maps_run_with_the_shapes_the_rules_give() {
    let dev = Cpu::default();
    let m = Maps::<f32, Cpu>::build(&dev);
    let y = m.forward(dev.zeros::<Rank3<2, 9, 9>>());
    assert_eq!(y.shape().concrete(), [4]);
    let s = Signal::<f32, Cpu>::build(&dev);
    let y = s.forward(dev.zeros::<Rank2<2, 16>>());
    assert_eq!(y.shape().concrete(), [3]);
    // `same` with an even kernel: 1 before, 2 after (PyTorch); 9 stays 9.
    assert_eq!(typenet::shapes::same_padding(4, 1), Some((1, 2)));
    assert_eq!(typenet::ops::conv::out_len_asym(9, 4, 1, 1, 2, 1), 9);
}
