use typenet::prelude::*;

const CUTOFF: f64 = -1.0;

network! {
    pub Net: [n, 3] -> [n, 8] { dense(3), radial_basis(8, cutoff = CUTOFF) }
}

fn main() {}
