use typenet::prelude::*;

const N: usize = 10;

network! {
    pub Net: [12] -> [12] { residual { dense(N) } }
}

fn main() {}
