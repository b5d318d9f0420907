use typenet::prelude::*;

const N: usize = 10;

network! {
    pub Net: [4] -> [12] { sum { { dense(N) }, { dense(12) } } }
}

fn main() {}
