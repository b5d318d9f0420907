use typenet::prelude::*;

network! {
    pub Net: [n, 2, 3] -> [n, 4] { set_dense(4) }
}

fn main() {}
