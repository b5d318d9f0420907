use typenet::prelude::*;

// The most common real bug: the flattened size is not what the first dense layer expects.
network! {
    pub Head: [16, 4, 4] -> [10] {
        relu, flatten,
        dense(400 -> 120), relu,
        dense(84), relu,
        dense(10),
    }
}

fn main() {
    // The error above is the only one: uses of the network still type-check.
    let dev = Cpu::default();
    let m = Head::<f32, Cpu>::build(&dev);
    let _: Tensor<Rank1<10>, f32, Cpu> = m.forward(dev.zeros::<Rank3<16, 4, 4>>());
}
