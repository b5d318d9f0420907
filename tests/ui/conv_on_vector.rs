use typenet::prelude::*;

network! {
    pub Net: [16] -> [4] { conv1d(4, kernel = 3), flatten, dense(4) }
}

fn main() {}
