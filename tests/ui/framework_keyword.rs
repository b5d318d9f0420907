use typenet::prelude::*;

network! {
    pub Net: [1, 8, 8] -> [4, 6, 6] { conv2d(4, kernel_size = 3) }
}

fn main() {}
