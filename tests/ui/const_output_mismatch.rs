use typenet::prelude::*;

const N: usize = 10;

network! {
    pub Net: [4] -> [12] { dense(8), relu, dense(N) }
}

fn main() {}
