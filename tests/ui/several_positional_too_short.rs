use typenet::prelude::*;

network! {
    pub Net: [40, 8] -> [40, 8] { positional(max = 32) }
}

fn main() {}
