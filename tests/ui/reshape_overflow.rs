use typenet::prelude::*;

network! {
    pub Net: [2, 9223372036854775808] -> [4] { flatten, dense(4) }
}

fn main() {}
