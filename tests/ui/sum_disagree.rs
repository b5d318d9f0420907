use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { sum { { dense(2) }, { dense(3) } } }
}

fn main() {}
