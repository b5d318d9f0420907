use typenet::prelude::*;

network! {
    pub Net: [1, 8, 8, 2] -> [2] { dense(2) }
}

fn main() {}
