use typenet::prelude::*;

network! {
    pub Net: [1, 8, 8] -> [4] {
        conv2d(4, kernel = 5), max_pool2d(2),
        conv2d(4, kernel = 3),
        global_avg_pool,
    }
}

fn main() {}
