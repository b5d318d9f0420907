use typenet::prelude::*;

network! {
    pub Net: [2, 8] -> [4] { dense(4) }
}

fn main() {}
