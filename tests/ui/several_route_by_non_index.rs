use typenet::prelude::*;

network! {
    pub Net: (x: [n, 4], y: [n, 3]) -> [n, 1] { route(y) { { dense(1) }, { dense(1) } } }
}

fn main() {}
