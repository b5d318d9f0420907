use typenet::prelude::*;

const N: usize = 10;

network! {
    pub Net: [4] -> (a: [12], b: [3]) { dense(8), heads { a: { dense(N) }, b: { dense(3) } } }
}

fn main() {}
