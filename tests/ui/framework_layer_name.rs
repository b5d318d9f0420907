use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { dense(8), ReLU, Linear(2) }
}

fn main() {}
