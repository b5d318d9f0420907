use typenet::prelude::*;

network! {
    pub Net: [2, 16] -> [4, 14] { conv1d(4, kernel = 3), transformer(heads = 2, ff = 8) }
}

fn main() {}
