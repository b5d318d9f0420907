//! Names a user may well choose that the generated code must not clash with: a sequence
//! length `T`, networks named `D`, `E`, `E2`, `D2` and `V` (the generated generics are `__E`,
//! `__D`, `__T`, `__E2`, `__D2`, `__V`).
use typenet::prelude::*;

const T: usize = 6;

network! {
    pub D: [T] -> [2] { dense(4), relu, dense(2) }
}

network! {
    pub E: [2, T] -> [2] { flatten, dense(T), D }
}

network! {
    pub E2: [T] -> [T] { D, dense(T) }
}

network! {
    pub D2: [T] -> [2] { E2, D }
}

network! {
    pub V: [2, T] -> [2] { E }
}

fn main() {
    let dev = Cpu::default();
    let v = V::<f32, Cpu>::build(&dev);
    let y = v.forward(dev.zeros::<Rank2<2, T>>());
    assert_eq!(y.shape().concrete(), [2]);
    let d2 = D2::<f32, Cpu>::build(&dev);
    assert_eq!(d2.forward(dev.zeros::<Rank1<T>>()).shape().concrete(), [2]);
    assert_eq!(<E as Network>::NUM_PARAMS, 12 * 6 + 6 + <D as Network>::NUM_PARAMS);
}
