use typenet::prelude::*;

network! {
    pub Net: [2, 8, 8] -> [6, 8, 8] { concat { { conv2d(2, kernel = 3, padding = 1) }, { conv2d(4, kernel = 3) } } }
}

fn main() {}
