use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { desne(8), relu, dense(2) }
}

fn main() {
    let dev = Cpu::default();
    let m = Net::<f32, Cpu>::build(&dev);
    let _: Tensor<Rank1<2>, f32, Cpu> = m.forward(dev.zeros::<Rank1<4>>());
}
