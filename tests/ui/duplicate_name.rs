use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { hidden: dense(8), hidden: dense(2) }
}

fn main() {}
