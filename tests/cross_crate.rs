//! `pub` networks declared in another crate (`tests/xcrate-lib`) used as layers: their
//! shapes cross the crate boundary through the hidden macro exported next to each struct.

mod common;

use common::*;
use typenet::prelude::*;

network! {
    /// The other crate's `Encoder` is declared over `[t, 6]`; here the sequence axis is `s`.
    pub Tagger: [s, 6] -> [s, 2] { xcrate_lib::Encoder, relu, dense(2) }
    /// A network from a module of the other crate.
    pub Classifier: [1, 8, 8] -> [3] { xcrate_lib::vision::Stem, relu, dense(3) }
}

#[test]
fn a_pub_network_of_another_crate_is_a_layer() {
    let dev = Cpu::seed_from_u64(13);
    let m = Tagger::<f64, Cpu>::build(&dev);
    assert_eq!(<Tagger as Network>::NUM_PARAMS, <xcrate_lib::Encoder as Network>::NUM_PARAMS + 4 * 2 + 2);
    assert_eq!(m.num_trainable_params(), <Tagger as Network>::NUM_PARAMS);
    let x: Tensor<(usize, Const<6>), f64, Cpu> = dev.sample_normal_like(&(5usize, Const));
    let y = m.forward(x.clone());
    assert_eq!(y.shape().0, 5);
    let want = m.dense_1.forward(m.encoder_1.forward(x).relu());
    assert_close("tagger", &y.as_vec(), &want.as_vec(), 1e-12);

    let c = Classifier::<f64, Cpu>::build(&dev);
    let img: Tensor<(Const<1>, Const<8>, Const<8>), f64, Cpu> = dev.sample_normal();
    let z = c.forward(img.clone());
    let want = c.dense_1.forward(c.stem_1.forward(img).relu());
    assert_close("classifier", &z.as_vec(), &want.as_vec(), 1e-12);
    // Batched, through the same layer.
    let batch: Tensor<(usize, Const<1>, Const<8>, Const<8>), f64, Cpu> = dev.sample_normal_like(&(2usize, Const, Const, Const));
    assert_eq!(c.forward(batch).shape().0, 2);
}
