use typenet::prelude::*;

network! {
    pub Net: [n, 4] -> [n, 2] { gcn(2) }
}

fn main() {}
