use typenet::prelude::*;

const N: usize = 10;

network! {
    pub Net: [t, 4] -> [t, 20] { concat { { dense(10) }, { transpose, dense(N), transpose } } }
}

fn main() {}
