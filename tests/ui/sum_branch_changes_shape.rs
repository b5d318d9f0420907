use typenet::prelude::*;

network! {
    pub Net: [4] -> [4] { sum { { relu }, { dense(8), relu, dense(3) } } }
}

fn main() {}
