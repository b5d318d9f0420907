use typenet::prelude::*;

network! {
    pub Net: (pos: [n, 3], z: [n]) -> [n, 8] { radial_basis(4, cutoff = 2.0, species = z) }
}

fn main() {}
