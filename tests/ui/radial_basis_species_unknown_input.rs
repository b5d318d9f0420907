use typenet::prelude::*;

network! {
    pub Net: (pos: [n, 3], species: [n]) -> [n, 8] { radial_basis(4, cutoff = 2.0, species = kind, kinds = 2) }
}

fn main() {}
