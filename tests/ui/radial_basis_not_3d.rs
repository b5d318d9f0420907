use typenet::prelude::*;

network! {
    pub Net: [n, 2] -> [n, 8] { radial_basis(8, cutoff = 3.0) }
}

fn main() {}
