use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { dense(0), dense(2) }
}

fn main() {}
