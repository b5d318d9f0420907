use typenet::prelude::*;

network! {
    pub Net: [3, 28, 28] -> [6] {
        conv2d(6, kernel = 5), max_pool2d(2), max_pool2d(2), max_pool2d(2), max_pool2d(2), max_pool2d(2),
        global_max_pool,
    }
}

fn main() {}
