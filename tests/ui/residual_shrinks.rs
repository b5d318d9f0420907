use typenet::prelude::*;

network! {
    pub Net: [4, 8, 8] -> [4, 8, 8] { residual { conv2d(4, kernel = 3), relu } }
}

fn main() {}
