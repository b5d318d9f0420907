use typenet::prelude::*;

network! {
    pub Net: [4] -> [2] { dense(8), relu(0.1), dense(2) }
}

fn main() {}
