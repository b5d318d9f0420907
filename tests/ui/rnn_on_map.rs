use typenet::prelude::*;

// A recurrent layer runs over `[t, f]` sequences, not over `[c, h, w]` feature maps.
network! {
    pub Net: [3, 28, 28] -> [28, 16] { lstm(16) }
}

fn main() {}
