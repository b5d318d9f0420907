use typenet::prelude::*;

mod img {
    pub const H: usize = 8;
}

network! {
    pub Net: [2, img::H, 8] -> [2, img::H, 8] { residual { conv2d(2, kernel = 3) } }
}

fn main() {}
