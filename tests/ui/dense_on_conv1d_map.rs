use typenet::prelude::*;

network! {
    pub Net: [2, 16] -> [3] { conv1d(4, kernel = 3), relu, dense(3) }
}

fn main() {}
