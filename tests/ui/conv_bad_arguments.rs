use typenet::prelude::*;

network! {
    pub Same: [2, 9, 9] -> [4, 5, 5] { conv2d(4, kernel = 3, stride = 2, padding = same) }
    pub Tuple: [2, 9] -> [4, 7] { conv1d(4, kernel = (3, 3)) }
    pub Kernel: [2, 9, 9] -> [4, 9, 9] { conv2d(4, kernal = 3) }
    pub PoolPad: [2, 9, 9] -> [2, 4, 4] { max_pool2d(2, padding = 2) }
}

fn main() {}
