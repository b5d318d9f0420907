use typenet::prelude::*;

network! {
    pub Net: [1, 8] -> [4] { conv1d(4, kernel = 3), relu, dense(4) }
}

fn main() {}
