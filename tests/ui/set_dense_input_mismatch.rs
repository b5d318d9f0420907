use typenet::prelude::*;

network! {
    pub Net: [n, 4] -> [n, 2] { set_dense(8), relu, set_dense(6 -> 2) }
}

fn main() {}
