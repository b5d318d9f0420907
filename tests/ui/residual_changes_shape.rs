use typenet::prelude::*;

network! {
    pub Net: [4] -> [8] { residual { dense(8), relu } }
}

fn main() {}
