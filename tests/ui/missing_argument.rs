use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { dense, relu, dense(2) }
}

fn main() {}
