use typenet::prelude::*;

network! {
    pub Net: [2, 3, 4] -> [4, 3, 4] { concat { { relu }, { reshape([2, 4, 3]) } } }
}

fn main() {}
