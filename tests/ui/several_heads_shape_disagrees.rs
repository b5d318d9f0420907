use typenet::prelude::*;

network! {
    pub Net: [4] -> (mean: [2], log_var: [2]) { heads { mean: { dense(2) }, log_var: { dense(3) } } }
}

fn main() {}
