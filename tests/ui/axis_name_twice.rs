use typenet::prelude::*;

network! {
    pub Net: [n, n] -> [n, n] { relu }
}

fn main() {}
