use typenet::prelude::*;

network! {
    pub Net: [t, 8] -> [8] { dense(8), relu, global_max_pool }
}

fn main() {}
