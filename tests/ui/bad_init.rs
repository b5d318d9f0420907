use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { dense(8, init = glorot), dense(2) }
}

fn main() {}
