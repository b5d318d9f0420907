use typenet::prelude::*;

network! {
    pub Net: [n, 3] -> [n, 8] { radial_basis(8, cutoff = 3.0), pool(sum) }
}

fn main() {}
