use typenet::prelude::*;

const HIDDEN: usize = 32;

network! {
    pub Net: [4] -> [2] { dense(16), relu, dense(HIDDEN -> 2) }
}

fn main() {}
