use typenet::prelude::*;

network! {
    pub Net: (x: [n, 4], p: [n, 2]) -> [n, 2] { cfconv(2, rbf = 8, cutoff = 3.0, positions = p) }
}

fn main() {}
