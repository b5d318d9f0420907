use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { Encoder, dense(2) }
}

fn main() {}
