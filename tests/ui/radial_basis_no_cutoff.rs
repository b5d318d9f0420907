use typenet::prelude::*;

network! {
    pub Net: [n, 3] -> [n, 8] { radial_basis(8) }
}

fn main() {}
