use typenet::prelude::*;

network! {
    pub Net: [4] -> [3] { dense(8), relu, dense(2) }
}

fn main() {}
