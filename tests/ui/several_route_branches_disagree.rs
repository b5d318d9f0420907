use typenet::prelude::*;

network! {
    pub Net: (x: [n, 4], z: [n]) -> [n, 1] { route(z) { { dense(1) }, { dense(2) } } }
}

fn main() {}
