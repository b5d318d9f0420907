use typenet::prelude::*;

network! {
    pub Net: [0, 4] -> [2] { flatten, dense(2) }
}

fn main() {}
