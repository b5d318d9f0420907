use typenet::prelude::*;

network! {
    pub Wide: (pos: [n, 3], z: [n, 2]) -> [n, 8] { radial_basis(4, cutoff = 2.0, species = z, kinds = 2) }
    pub Other: (pos: [n, 3], z: [m]) -> [n, 8] { radial_basis(4, cutoff = 2.0, species = z, kinds = 2) }
}

fn main() {}
