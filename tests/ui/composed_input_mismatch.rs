use typenet::prelude::*;

network! {
    pub Encoder: [64] -> [8] { dense(8), relu }
    pub Net: [32] -> [2] { dense(16), Encoder, dense(2) }
}

fn main() {}
