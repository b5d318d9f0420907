use typenet::prelude::*;

network! {
    pub Net: [4] -> (mean: [2], log_var: [2]) { dense(4), heads { mean: { dense(2) }, logvar: { dense(2) } } }
}

fn main() {}
