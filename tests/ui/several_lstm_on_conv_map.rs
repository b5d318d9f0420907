use typenet::prelude::*;

network! {
    pub Net: [2, 16] -> [14, 8] { conv1d(4, kernel = 3), lstm(8) }
}

fn main() {}
