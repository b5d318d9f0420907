use typenet::prelude::*;

network! {
    pub Net: [n, 4] -> [4] { pool(avg) }
}

fn main() {}
