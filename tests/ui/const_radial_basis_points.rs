use typenet::prelude::*;

const D: usize = 2;

network! {
    pub Net: [n, D] -> [n, 4] { radial_basis(4, cutoff = 2.0) }
}

fn main() {}
