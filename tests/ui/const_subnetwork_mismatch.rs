use typenet::prelude::*;

const N: usize = 10;

network! {
    pub Inner: [12] -> [2] { dense(2) }
    pub Net: [4] -> [2] { dense(N), Inner }
}

fn main() {}
