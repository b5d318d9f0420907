use typenet::prelude::*;

network! {
    pub Net: [n, 4] -> [4] { graph_pool(sum) }
}

fn main() {}
