use typenet::prelude::*;

mod img {
    pub const H: usize = 8;
}

network! {
    pub Net: [2, img::H, 8] -> [4, 8, 6] { conv2d(4, kernel = 3) }
}

fn main() {}
